// Uses the installed package: quantize, dequantize, check the error bound, exit 0 on success.
#include <cmath>
#include <cstdio>

#include <ptq/ptq.hpp>

int main() {
    Eigen::MatrixXf w = Eigen::MatrixXf::Random(16, 100);
    const auto q = ptq::quantize<ptq::IntFormat<4, false>>(w, {}, ptq::PerGroup<32>{});
    const auto d = ptq::dequantize(q);
    // Every element is within half a step of its group's scale.
    for (Eigen::Index r = 0; r < w.rows(); ++r)
        for (Eigen::Index c = 0; c < w.cols(); ++c) {
            const float s = q.params_at(std::size_t(r), std::size_t(c)).scale;
            if (!(std::fabs(w(r, c) - d(r, c)) <= 0.5f * s * 1.0001f)) {
                std::printf("consumer: error bound violated at (%ld, %ld)\n", long(r), long(c));
                return 1;
            }
        }
    std::printf("consumer: ptq package works (SQNR %.2f dB)\n", ptq::sqnr_db(w, d));
    return 0;
}
