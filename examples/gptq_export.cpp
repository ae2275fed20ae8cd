// Quantize one weight matrix with GPTQ and export it as a GPTQ safetensors file (the layout
// GPTQModel / AutoGPTQ / vLLM read), then read it back with the consumer's dequantization.
//
//   ptq_gptq_export [OUT.safetensors]      (default gptq_layer.safetensors)
#include <ptq/io.hpp>
#include <ptq/io/gptq_layout.hpp>
#include <ptq/ptq.hpp>

#include <cstdio>
#include <random>
#include <span>
#include <string>
#include <vector>

int main(int argc, char** argv) {
    const std::string out = argc > 1 ? argv[1] : "gptq_layer.safetensors";
    // A [256 x 512] linear layer and 2048 calibration inputs, random here (a real program takes
    // W from the model and X from a forward pass).
    std::mt19937 rng(1);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    Eigen::MatrixXf W(256, 512), X(2048, 512);
    for (Eigen::Index i = 0; i < W.size(); ++i) W.data()[i] = 0.02f * nd(rng);
    for (Eigen::Index i = 0; i < X.size(); ++i) X.data()[i] = nd(rng);

    // Hessian H = 2/n X^T X of the layer-output loss.
    ptq::CalibrationStats stats(X.cols());
    stats.add(X);
    const Eigen::MatrixXd H = stats.hessian();

    // 4-bit symmetric GPTQ in groups of 128, scales rounded to fp16 before the codes are chosen
    // (GPTQ files store fp16 scales: the file then holds exactly the weights ptq computed).
    ptq::GptqOptions opt;
    opt.quant.scale_storage = ptq::ScaleStorage::f16;
    const auto r = ptq::Gptq<ptq::IntFormat<4, true>, ptq::PerGroup<>>(opt, ptq::PerGroup<>{128}).quantize(W, H);

    // GPTQ tensors qweight / qzeros / scales / g_idx, written as one safetensors file.
    const std::string prefix = "model.layers.0.mlp.up_proj";
    const ptq::io::LayerExport e = ptq::io::export_gptq(r.quantized, prefix, r.storage_perm);
    std::vector<ptq::io::TensorData> st;
    for (const auto& t : e.tensors)
        st.push_back({t.name, t.dtype, {t.shape.begin(), t.shape.end()}, std::as_bytes(std::span(t.data))});
    ptq::io::write_safetensors(out, st, {{"format", "pt"}});
    std::printf("wrote %s; quantization_config: %s\n", out.c_str(), e.quantization_config.dump().c_str());

    // Read back with GPTQModel's dequantization formula and compare with ptq's own.
    const ptq::io::SafetensorsFile f(out);
    std::vector<ptq::io::LayerTensor> back;
    for (const auto& info : f.tensors()) {
        const ptq::io::TensorView v = f.tensor(info);
        ptq::io::LayerTensor t{info.name, info.dtype, {info.shape.begin(), info.shape.end()}, {}};
        const auto* b = reinterpret_cast<const std::uint8_t*>(v.data.data());
        t.data.assign(b, b + v.data.size());
        back.push_back(std::move(t));
    }
    const ptq::RowMatrixXf w_file =
        ptq::io::dequantize_gptq(back, prefix, ptq::io::gptq_config_from_json(e.quantization_config));
    std::printf("max |file - ptq| = %g, SQNR %.2f dB\n", (w_file - r.dequantized).cwiseAbs().maxCoeff(),
                ptq::sqnr_db(W, w_file));
    return 0;
}
