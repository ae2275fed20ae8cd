// The README's code, compiled and run, so that the documentation cannot rot.
#include <doctest/doctest.h>

#include <random>

#include <ptq/ptq.hpp>

TEST_CASE("readme: the tour, the algorithm sections and their stated numbers") {
    std::mt19937 gen(3);
    std::normal_distribution<float> nd(0.0f, 0.05f);
    Eigen::MatrixXf W(64, 256), X(128, 256);
    for (Eigen::Index i = 0; i < W.size(); ++i) W.data()[i] = nd(gen);
    for (Eigen::Index i = 0; i < X.size(); ++i) X.data()[i] = 20.0f * nd(gen);

    // --- A short tour
    ptq::QuantizedMatrix<ptq::IntFormat<4, false>> q = ptq::quantize<ptq::IntFormat<4, false>, ptq::PerGroup<32>>(W);
    ptq::RowMatrixXf W_hat = ptq::dequantize(q);
    CHECK(ptq::effective_bits(q) == 5.0);
    CHECK(ptq::sqnr_db(W, W_hat) > 15.0);
    ptq::QuantOptions o;
    o.rounding = ptq::Rounding::half_away;
    o.widen_to_zero = false;
    o.range = ptq::RangeMethod::mse_search;
    o.clip = {.grid = 100, .max_shrink = 0.8f, .norm = 2.4f};
    auto W_fq = ptq::fake_quantize<ptq::IntFormat<3, false>>(W, o, ptq::PerGroup<>{128});
    CHECK(W_fq.rows() == 64);
    auto mx = ptq::quantize<ptq::MxInt<8, 32>>(W);
    CHECK(ptq::effective_bits(mx) == 8.25);
    auto fp4 = ptq::fake_quantize<ptq::MxFp<2, 1, 32>>(W);
    auto w8 = ptq::fake_quantize<ptq::Fp8<4, 3>>(W, {}, ptq::PerChannel{});
    auto x8 = ptq::fake_quantize_activations<ptq::IntFormat<8, true>>(X);
    CHECK(ptq::sqnr_db(X, x8) > ptq::sqnr_db(W, fp4));
    CHECK(ptq::sqnr_db(W, w8) > 25.0);
    ptq::Rtn<ptq::IntFormat<4, true>, ptq::PerGroup<128>> rtn(o);
    auto q2 = rtn.quantize(W.block(0, 0, 32, 128));
    CHECK(q2.rows() == 32);
    const Eigen::MatrixXd H = (2.0 / 128.0) * X.cast<double>().transpose() * X.cast<double>();
    ptq::Gptq<ptq::IntFormat<4, true>, ptq::PerGroup<>> gptq({}, ptq::PerGroup<>{128});
    auto g = gptq.quantize(W, H);
    CHECK(g.diagnostics.damped_loss < g.diagnostics.damped_loss_rtn);
    // --- Refining GPTQ's rounding
    auto refined = ptq::refine_rounding(W, H, g, ptq::RefineOptions{.passes = 2});
    CHECK(refined.objective.back() <= refined.objective.front());

    // --- SmoothQuant / AWQ / pipeline
    ptq::CalibrationStats stats(256);
    stats.add(X);
    const ptq::RowMatrixXf wq = W, wk = W.topRows(32), wv = W.bottomRows(32), w1 = W, w3 = W.topRows(16);
    Eigen::VectorXf attn_norm_weight = Eigen::VectorXf::Ones(256);
    auto sq = ptq::SmoothQuant({.alpha = 0.5f}).compute(stats.max_abs(), ptq::linears(wq, wk, wv));
    ptq::fold_into_rmsnorm(attn_norm_weight, sq.scales);
    CHECK(sq.weights.size() == 3);
    auto awq = ptq::Awq<ptq::IntFormat<4, false>, ptq::PerGroup<128>>().compute(X, ptq::linears(w1, w3));
    CHECK(awq.output_mse <= awq.output_mse_rtn);
    ptq::PipelineOptions p;
    p.transform = ptq::Transform::awq;
    p.reconstruct = ptq::Reconstruct::gptq;
    auto r = ptq::Pipeline<ptq::MxInt<4, 32>>(p).quantize(X, ptq::linears(wq, wk, wv));
    CHECK(r.output_mse[0] < r.output_mse_rtn[0]);

    // --- Rotations
    {
        const Eigen::Index d = 12;
        ptq::RowMatrixXf embedding = W.leftCols(d), wq = W.leftCols(d), wk = W.leftCols(d).topRows(8),
                         wv = W.leftCols(d).topRows(8), wo = W.topLeftCorner(d, 64);
        Eigen::VectorXf attn_norm = Eigen::VectorXf::Constant(d, 2.0f);
        const Eigen::MatrixXd Q = ptq::random_orthogonal(d, /*seed=*/0);
        ptq::rotate_input(embedding, Q);
        ptq::fold_norm_weight(attn_norm, {&wq, &wk, &wv});
        for (auto* w : {&wq, &wk, &wv}) ptq::rotate_input(*w, Q);
        ptq::rotate_output(wo, Q);
        CHECK(attn_norm == Eigen::VectorXf::Ones(d));
        CHECK((embedding * wq.transpose() - 2.0f * W.leftCols(d) * W.leftCols(d).transpose()).norm() <=
              1e-4f * wq.norm() * embedding.norm());
    }

    // --- LQER
    ptq::LqerOptions lo;
    lo.rank = 32;
    lo.scaled = true;
    lo.svd = ptq::SvdMethod::randomized;
    Eigen::VectorXf s = stats.sample_mean_abs_max().cast<float>();
    auto lr = ptq::Lqer<ptq::MxInt<4, 32>, ptq::PerGroup<32>, ptq::MxInt<8, 16>>(lo).compute(W, &s);
    auto y = ptq::lqer_forward<ptq::MxInt<8, 16>>(X, lr);
    CHECK(y.rows() == 128);
    CHECK(lr.error_after < lr.error_before);
    CHECK(lr.extra_macs_ratio() == doctest::Approx((256.0 + 64.0) * 32.0 / (256.0 * 64.0)));
}
