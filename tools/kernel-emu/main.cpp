// Kernel emulation checks: each kernel of kernels/*.cu, run on the CPU through emu.h, against a
// naive double-precision reference written from the CPU twins' documented semantics, plus the
// convolution compositions with the exact SGEMM parameters src/backend/cuda/conv.rs uses.
// Build and run: tools/kernel-emu/run.sh
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>

#include "emu.h"
// The loader prepends common.cuh to each family; here all families share one translation unit.
#include "../../kernels/common.cuh"
#include "../../kernels/conv.cu"
#include "../../kernels/matmul.cu"
#include "../../kernels/batchnorm.cu"
#include "../../kernels/elementwise.cu"
#include "../../kernels/pool.cu"
#include "../../kernels/loss.cu"
#include "../../kernels/optim.cu"
#include "../../kernels/spconv.cu"

using V = std::vector<float>;
static std::mt19937 rng(42);
static int failures = 0;

static V rnd(size_t n, float lo = -1.f, float hi = 1.f) {
    std::uniform_real_distribution<float> d(lo, hi);
    V v(n);
    for (auto& x : v) x = d(rng);
    return v;
}

static void check(const char* what, const V& got, const std::vector<double>& want, double tol = 1e-4) {
    double worst = 0;
    size_t at = 0;
    if (got.size() != want.size()) {
        std::printf("FAIL %s: size %zu vs %zu\n", what, got.size(), want.size());
        ++failures;
        return;
    }
    for (size_t i = 0; i < got.size(); ++i) {
        const double e = std::fabs(got[i] - want[i]) / std::max(1.0, std::fabs(want[i]));
        if (!(e <= worst)) { worst = e; at = i; }
    }
    const bool ok = worst <= tol;
    if (!ok) ++failures;
    std::printf("%s %s: max rel err %.3g (at %zu: %g vs %g)\n", ok ? "ok  " : "FAIL", what, worst, at,
                got.empty() ? 0.0 : got[at], want.empty() ? 0.0 : want[at]);
}

static dim3 g1(unsigned x) { return dim3{x, 1, 1}; }
static const dim3 B256 = dim3{256, 1, 1};

// ---- references -------------------------------------------------------------------------
static std::vector<double> ref_im2col(const V& x, const Conv2dParams& p, int nimg) {
    const int hw = p.h_out * p.w_out, rows = p.c_in * p.k_h * p.k_w;
    std::vector<double> col((size_t)nimg * rows * hw, 0.0);
    for (int i = 0; i < nimg; ++i)
        for (int ci = 0; ci < (int)p.c_in; ++ci)
            for (int kh = 0; kh < (int)p.k_h; ++kh)
                for (int kw = 0; kw < (int)p.k_w; ++kw)
                    for (int oh = 0; oh < (int)p.h_out; ++oh)
                        for (int ow = 0; ow < (int)p.w_out; ++ow) {
                            int ih = oh * p.stride - p.pad + kh, iw = ow * p.stride - p.pad + kw;
                            double v = 0;
                            if (ih >= 0 && ih < (int)p.h_in && iw >= 0 && iw < (int)p.w_in)
                                v = x[(((size_t)i * p.c_in + ci) * p.h_in + ih) * p.w_in + iw];
                            col[((size_t)i * rows + (ci * p.k_h + kh) * p.k_w + kw) * hw + oh * p.w_out + ow] = v;
                        }
    return col;
}
static std::vector<double> ref_col2im(const V& col, const Conv2dParams& p, int nimg) {
    const int hw = p.h_out * p.w_out, rows = p.c_in * p.k_h * p.k_w;
    std::vector<double> x((size_t)nimg * p.c_in * p.h_in * p.w_in, 0.0);
    for (int i = 0; i < nimg; ++i)
        for (int ci = 0; ci < (int)p.c_in; ++ci)
            for (int kh = 0; kh < (int)p.k_h; ++kh)
                for (int kw = 0; kw < (int)p.k_w; ++kw)
                    for (int oh = 0; oh < (int)p.h_out; ++oh)
                        for (int ow = 0; ow < (int)p.w_out; ++ow) {
                            int ih = oh * p.stride - p.pad + kh, iw = ow * p.stride - p.pad + kw;
                            if (ih >= 0 && ih < (int)p.h_in && iw >= 0 && iw < (int)p.w_in)
                                x[(((size_t)i * p.c_in + ci) * p.h_in + ih) * p.w_in + iw] +=
                                    col[((size_t)i * rows + (ci * p.k_h + kh) * p.k_w + kw) * hw + oh * p.w_out + ow];
                        }
    return x;
}
static std::vector<double> ref_conv(const V& x, const V& w, const Conv2dParams& p) {
    std::vector<double> y((size_t)p.n * p.c_out * p.h_out * p.w_out, 0.0);
    for (int i = 0; i < (int)p.n; ++i)
        for (int co = 0; co < (int)p.c_out; ++co)
            for (int oh = 0; oh < (int)p.h_out; ++oh)
                for (int ow = 0; ow < (int)p.w_out; ++ow) {
                    double acc = 0;
                    for (int ci = 0; ci < (int)p.c_in; ++ci)
                        for (int kh = 0; kh < (int)p.k_h; ++kh)
                            for (int kw = 0; kw < (int)p.k_w; ++kw) {
                                int ih = oh * p.stride - p.pad + kh, iw = ow * p.stride - p.pad + kw;
                                if (ih >= 0 && ih < (int)p.h_in && iw >= 0 && iw < (int)p.w_in)
                                    acc += (double)x[(((size_t)i * p.c_in + ci) * p.h_in + ih) * p.w_in + iw] *
                                           w[((co * p.c_in + ci) * p.k_h + kh) * p.k_w + kw];
                            }
                    y[(((size_t)i * p.c_out + co) * p.h_out + oh) * p.w_out + ow] = acc;
                }
    return y;
}

// ---- launch helpers mirroring src/backend/cuda ----------------------------------------------
struct Gemm {
    bool ta, tb;
    int m, n, k;
    float alpha = 1, beta = 0;
    int lda, ldb, ldc;
    int batch = 1, groups = 1;
    i64 sa = 0, sb = 0, sc = 0;
};
static Gemm gemm_new(bool ta, bool tb, int m, int n, int k) {
    Gemm g{ta, tb, m, n, k};
    g.lda = ta ? m : k;
    g.ldb = tb ? k : n;
    g.ldc = n;
    return g;
}
static void run_sgemm(const Gemm& g, const float* A, const float* B, float* C) {
    dim3 grid{(unsigned)((g.n + 63) / 64), (unsigned)((g.m + 63) / 64), (unsigned)g.groups};
    emu_launch(grid, B256, [&] {
        sgemm_f32(g.ta, g.tb, g.m, g.n, g.k, g.alpha, A, g.lda, g.sa, B, g.ldb, g.sb, g.beta, C, g.ldc, g.sc, g.batch);
    });
}

static void test_gemm() {
    for (int ta = 0; ta < 2; ++ta)
        for (int tb = 0; tb < 2; ++tb) {
            const int m = 70, n = 33, k = 37, lda_pad = 3, batch = 5, groups = 2;
            Gemm g = gemm_new(ta, tb, m, n, k);
            g.lda += lda_pad; g.ldb += 1; g.ldc += 2;
            g.alpha = 0.7f; g.beta = 0.3f;
            g.batch = batch; g.groups = groups;
            const int arows = ta ? k : m, brows = tb ? n : k;
            g.sa = (i64)arows * g.lda + 5; g.sb = (i64)brows * g.ldb + 2; g.sc = (i64)m * g.ldc;
            V A = rnd(g.sa * batch), B = rnd(g.sb * batch), C = rnd(g.sc * groups);
            std::vector<double> want(C.begin(), C.end());
            for (int z = 0; z < groups; ++z) {
                const int b0 = (int)((i64)z * batch / groups), b1 = (int)((i64)(z + 1) * batch / groups);
                for (int i = 0; i < m; ++i)
                    for (int j = 0; j < n; ++j) {
                        double acc = 0;
                        for (int b = b0; b < b1; ++b)
                            for (int l = 0; l < k; ++l) {
                                double a = ta ? A[b * g.sa + (i64)l * g.lda + i] : A[b * g.sa + (i64)i * g.lda + l];
                                double bb = tb ? B[b * g.sb + (i64)j * g.ldb + l] : B[b * g.sb + (i64)l * g.ldb + j];
                                acc += a * bb;
                            }
                        double& c = want[z * g.sc + (i64)i * g.ldc + j];
                        c = g.alpha * acc + g.beta * c;
                    }
            }
            run_sgemm(g, A.data(), B.data(), C.data());
            check((std::string("sgemm ta=") + std::to_string(ta) + " tb=" + std::to_string(tb) + " batch 5 groups 2").c_str(), C, want);
        }
    // beta == 0 overwrites NaN.
    Gemm g = gemm_new(false, false, 3, 4, 5);
    V A = rnd(15), B = rnd(20), C(12, NAN);
    std::vector<double> want(12, 0);
    for (int i = 0; i < 3; ++i) for (int j = 0; j < 4; ++j) for (int l = 0; l < 5; ++l) want[i * 4 + j] += (double)A[i * 5 + l] * B[l * 4 + j];
    run_sgemm(g, A.data(), B.data(), C.data());
    check("sgemm beta=0 overwrites NaN", C, want);
}

static void test_conv() {
    // (n, c_in, h, w, c_out, k, stride, pad)
    int cases[][8] = {{2, 3, 9, 7, 5, 3, 2, 1}, {3, 4, 8, 8, 6, 3, 1, 1}, {2, 5, 6, 6, 4, 1, 1, 0}, {2, 2, 7, 5, 3, 2, 3, 1}};
    for (auto& c : cases) {
        Conv2dParams p{};
        p.n = c[0]; p.c_in = c[1]; p.h_in = c[2]; p.w_in = c[3]; p.c_out = c[4]; p.k_h = p.k_w = c[5];
        p.stride = c[6]; p.pad = c[7];
        p.h_out = (p.h_in + 2 * p.pad - p.k_h) / p.stride + 1;
        p.w_out = (p.w_in + 2 * p.pad - p.k_w) / p.stride + 1;
        char name[128];
        std::snprintf(name, sizeof name, "n%d c%d %dx%d -> c%d k%d s%d p%d", c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]);
        const int n = p.n, cout = p.c_out, kk = p.c_in * p.k_h * p.k_w, hw = p.h_out * p.w_out;
        const int img_in = p.c_in * p.h_in * p.w_in, img_out = cout * hw;
        V x = rnd((size_t)n * img_in), w = rnd((size_t)cout * kk), bias = rnd(cout);
        // im2col / col2im over all images (nimg = n), small grid to exercise grid-stride loops.
        V col((size_t)n * kk * hw, -7.f);
        emu_launch(g1(3), B256, [&] { im2col_f32(x.data(), p, col.data(), n); });
        check((std::string("im2col ") + name).c_str(), col, ref_im2col(x, p, n));
        V colr = rnd(col.size()), xr(x.size(), -7.f);
        emu_launch(g1(2), B256, [&] { col2im_f32(colr.data(), p, xr.data(), n); });
        check((std::string("col2im ") + name).c_str(), xr, ref_col2im(colr, p, n));
        // Forward: im2col + batched GEMM (as conv.rs), then bias_add.
        V y((size_t)n * img_out, -7.f);
        Gemm g = gemm_new(false, false, cout, hw, kk);
        g.batch = g.groups = n; g.sa = 0; g.sb = (i64)kk * hw; g.sc = img_out;
        run_sgemm(g, w.data(), col.data(), y.data());
        emu_launch(g1(2), B256, [&] { bias_add_f32(y.data(), bias.data(), n, cout, hw); });
        auto want = ref_conv(x, w, p);
        for (size_t i = 0; i < want.size(); ++i) want[i] += bias[(i / hw) % cout];
        check((std::string("conv fwd ") + name).c_str(), y, want);
        // Backward to the input: dcol = W^T dY (batched), col2im.
        V dy = rnd(y.size()), dcol((size_t)n * kk * hw), dx(x.size(), -7.f);
        Gemm gi = gemm_new(true, false, kk, hw, cout);
        gi.batch = gi.groups = n; gi.sb = img_out; gi.sc = (i64)kk * hw;
        run_sgemm(gi, w.data(), dy.data(), dcol.data());
        emu_launch(g1(2), B256, [&] { col2im_f32(dcol.data(), p, dx.data(), n); });
        // Reference: dx = adjoint of the conv: <dy, conv(x)> = <dx, x>.
        std::vector<double> wdx(x.size(), 0.0);
        for (size_t i = 0; i < x.size(); ++i) {
            V e(x.size(), 0.f);
            e[i] = 1.f;
            auto ye = ref_conv(e, w, p);
            double s = 0;
            for (size_t j = 0; j < ye.size(); ++j) s += ye[j] * dy[j];
            wdx[i] = s;
        }
        check((std::string("conv bwd input ") + name).c_str(), dx, wdx);
        // Backward to the weight: split-K over images into `groups` partials, then channel_sum.
        const int wlen = cout * kk;
        for (int groups : {1, 2, n}) {
            if (groups > n) continue;
            V part((size_t)groups * wlen, 0.f), dw(wlen, -7.f);
            Gemm gw = gemm_new(false, true, cout, kk, hw);
            gw.beta = 1; gw.batch = n; gw.groups = groups; gw.sa = img_out; gw.sb = (i64)kk * hw; gw.sc = wlen;
            run_sgemm(gw, dy.data(), col.data(), part.data());
            emu_launch(g1(1), B256, [&] { channel_sum_f32(part.data(), groups, wlen, 1, dw.data(), 1); });
            std::vector<double> wdw(wlen, 0.0);
            for (int co = 0; co < cout; ++co)
                for (int r = 0; r < kk; ++r) {
                    double s = 0;
                    for (int i = 0; i < n; ++i)
                        for (int q = 0; q < hw; ++q)
                            s += (double)dy[(size_t)i * img_out + co * hw + q] * col[((size_t)i * kk + r) * hw + q];
                    wdw[co * kk + r] = s;
                }
            check((std::string("conv bwd weight groups=") + std::to_string(groups) + " " + name).c_str(), dw, wdw);
        }
    }
}

static void test_channel_sum() {
    for (int per_thread = 0; per_thread < 2; ++per_thread) {
        const int n = 5, c = 7, s = 61;
        V x = rnd((size_t)n * c * s), out(c, -7.f);
        emu_launch(g1(3), B256, [&] { channel_sum_f32(x.data(), n, c, s, out.data(), per_thread); });
        std::vector<double> want(c, 0.0);
        for (int i = 0; i < n; ++i) for (int ch = 0; ch < c; ++ch) for (int t = 0; t < s; ++t) want[ch] += x[((size_t)i * c + ch) * s + t];
        check(per_thread ? "channel_sum per thread" : "channel_sum per block", out, want);
    }
}

static void test_batchnorm() {
    for (auto [n, c, s] : {std::tuple{4, 3, 50}, std::tuple{37, 5, 1}, std::tuple{2, 2, 300}}) {
        const size_t len = (size_t)n * c * s;
        V x = rnd(len, 0.5f, 3.0f), gamma = rnd(c), beta = rnd(c), dy = rnd(len);
        V mean(c), var(c), invstd(c), y(len), sdy(c), sdx(c), dx(len);
        const float eps = 1e-5f;
        emu_launch(g1(2), B256, [&] { bn_stats_f32(x.data(), n, c, s, mean.data(), var.data()); });
        std::vector<double> wm(c, 0), wv(c, 0), wi(c), wy(len), ws(c, 0), wsx(c, 0), wdx(len);
        for (int ch = 0; ch < c; ++ch) {
            for (int i = 0; i < n; ++i) for (int t = 0; t < s; ++t) wm[ch] += x[((size_t)i * c + ch) * s + t];
            wm[ch] /= (double)n * s;
            for (int i = 0; i < n; ++i) for (int t = 0; t < s; ++t) { double d = x[((size_t)i * c + ch) * s + t] - wm[ch]; wv[ch] += d * d; }
            wv[ch] /= (double)n * s;
        }
        std::string tag = " n" + std::to_string(n) + " c" + std::to_string(c) + " s" + std::to_string(s);
        check(("bn_stats mean" + tag).c_str(), mean, wm);
        check(("bn_stats var" + tag).c_str(), var, wv);
        emu_launch(g1(1), B256, [&] { bn_invstd_f32(var.data(), eps, invstd.data(), c); });
        for (int ch = 0; ch < c; ++ch) wi[ch] = 1.0 / std::sqrt((double)var[ch] + eps);
        check(("bn_invstd" + tag).c_str(), invstd, wi);
        emu_launch(g1(3), B256, [&] { bn_fwd_f32(x.data(), n, c, s, mean.data(), invstd.data(), gamma.data(), beta.data(), y.data()); });
        for (size_t i = 0; i < len; ++i) { int ch = (i / s) % c; wy[i] = (x[i] - (double)mean[ch]) * invstd[ch] * gamma[ch] + beta[ch]; }
        check(("bn_fwd" + tag).c_str(), y, wy);
        emu_launch(g1(2), B256, [&] { bn_bwd_reduce_f32(dy.data(), x.data(), n, c, s, mean.data(), invstd.data(), sdy.data(), sdx.data()); });
        for (size_t i = 0; i < len; ++i) { int ch = (i / s) % c; ws[ch] += dy[i]; wsx[ch] += dy[i] * (x[i] - (double)mean[ch]) * invstd[ch]; }
        check(("bn_bwd_reduce sum_dy" + tag).c_str(), sdy, ws);
        check(("bn_bwd_reduce sum_dy_xhat" + tag).c_str(), sdx, wsx);
        emu_launch(g1(3), B256, [&] { bn_bwd_dx_f32(dy.data(), x.data(), n, c, s, mean.data(), invstd.data(), gamma.data(), sdy.data(), sdx.data(), dx.data()); });
        const double cnt = (double)n * s;
        for (size_t i = 0; i < len; ++i) {
            int ch = (i / s) % c;
            double xhat = (x[i] - (double)mean[ch]) * invstd[ch];
            wdx[i] = gamma[ch] * (double)invstd[ch] / cnt * (cnt * dy[i] - sdy[ch] - xhat * sdx[ch]);
        }
        check(("bn_bwd_dx" + tag).c_str(), dx, wdx);
    }
}

static void test_elementwise() {
    const i64 len = 3001;
    V x = rnd(len), y = rnd(len), out(len);
    x[5] = NAN;
    emu_launch(g1(3), B256, [&] { relu_fwd_f32(x.data(), out.data(), len); });
    std::vector<double> w(len);
    for (i64 i = 0; i < len; ++i) w[i] = x[i] > 0 ? x[i] : 0;
    check("relu_fwd (NaN -> 0)", out, w);
    x[5] = 0.5f;
    emu_launch(g1(3), B256, [&] { relu_bwd_f32(x.data(), y.data(), out.data(), len); });
    for (i64 i = 0; i < len; ++i) w[i] = y[i] > 0 ? x[i] : 0;
    check("relu_bwd", out, w);
    emu_launch(g1(3), B256, [&] { add_f32(x.data(), y.data(), out.data(), len); });
    for (i64 i = 0; i < len; ++i) w[i] = (double)x[i] + y[i];
    check("add", out, w);
    emu_launch(g1(3), B256, [&] { mul_f32(x.data(), y.data(), out.data(), len); });
    for (i64 i = 0; i < len; ++i) w[i] = (double)x[i] * y[i];
    check("mul", out, w);
    V yy = y;
    emu_launch(g1(3), B256, [&] { axpby_f32(0.5f, x.data(), -2.f, yy.data(), len); });
    for (i64 i = 0; i < len; ++i) w[i] = 0.5 * x[i] - 2.0 * y[i];
    check("axpby", yy, w);
    // Two-pass sum as launch_sum: 4 blocks of partials, then one block with the scale.
    for (i64 n : {(i64)0, (i64)1, (i64)300, (i64)100001}) {
        V big = rnd(n);
        double want = 0;
        for (auto v : big) want += v;
        const unsigned blocks = std::max<i64>(1, std::min<i64>(1024, (n + 4095) / 4096));
        V part(blocks), out1(1);
        emu_launch(g1(blocks), B256, [&] { sum_f32(big.data(), n, 1.f, part.data()); });
        emu_launch(g1(1), B256, [&] { sum_f32(part.data(), blocks, 0.25f, out1.data()); });
        check(("sum len " + std::to_string(n)).c_str(), out1, {want * 0.25});
    }
}

static void test_pool() {
    // (n, c, h, w, k, stride, pad)
    int cases[][7] = {{2, 3, 8, 8, 2, 2, 0}, {1, 2, 7, 9, 3, 2, 1}, {2, 1, 5, 5, 3, 1, 1}, {1, 2, 6, 5, 2, 1, 1}};
    for (auto& c : cases) {
        Pool2dParams p{};
        p.n = c[0]; p.c = c[1]; p.h_in = c[2]; p.w_in = c[3]; p.k = c[4]; p.stride = c[5]; p.pad = c[6];
        p.h_out = (p.h_in + 2 * p.pad - p.k) / p.stride + 1;
        p.w_out = (p.w_in + 2 * p.pad - p.k) / p.stride + 1;
        const size_t planes = p.n * p.c, pin = p.h_in * p.w_in, pout = p.h_out * p.w_out;
        V x = rnd(planes * pin);
        // Ties: quantise so windows hold equal values; one NaN.
        for (auto& v : x) v = std::round(v * 2) / 2;
        x[7] = NAN;
        V y(planes * pout), idx(planes * pout), dy = rnd(planes * pout), dx(planes * pin, -7.f);
        emu_launch(g1(2), B256, [&] { maxpool2d_fwd_f32(x.data(), p, y.data(), idx.data()); });
        std::vector<double> wy(planes * pout), wi(planes * pout), wdx(planes * pin, 0.0), ay(planes * pout), wadx(planes * pin, 0.0);
        for (size_t pl = 0; pl < planes; ++pl)
            for (int oh = 0; oh < (int)p.h_out; ++oh)
                for (int ow = 0; ow < (int)p.w_out; ++ow) {
                    double best = -INFINITY, sum = 0;
                    int arg = -1;
                    bool nan = false;
                    for (int kh = 0; kh < (int)p.k; ++kh)
                        for (int kw = 0; kw < (int)p.k; ++kw) {
                            int h = oh * p.stride - p.pad + kh, w = ow * p.stride - p.pad + kw;
                            if (h < 0 || h >= (int)p.h_in || w < 0 || w >= (int)p.w_in) continue;
                            double v = x[pl * pin + h * p.w_in + w];
                            sum += std::isnan(v) ? 0 : v;
                            if (arg < 0) arg = h * p.w_in + w;
                            if (nan) continue;
                            if (std::isnan(v)) { nan = true; best = v; arg = h * p.w_in + w; continue; }
                            if (v > best) { best = v; arg = h * p.w_in + w; }
                        }
                    const size_t o = pl * pout + oh * p.w_out + ow;
                    wy[o] = best; wi[o] = arg; ay[o] = sum / (p.k * p.k);
                    wdx[pl * pin + arg] += dy[o];
                    for (int kh = 0; kh < (int)p.k; ++kh)
                        for (int kw = 0; kw < (int)p.k; ++kw) {
                            int h = oh * p.stride - p.pad + kh, w = ow * p.stride - p.pad + kw;
                            if (h < 0 || h >= (int)p.h_in || w < 0 || w >= (int)p.w_in) continue;
                            wadx[pl * pin + h * p.w_in + w] += dy[o] / (p.k * p.k);
                        }
                }
        char name[96];
        std::snprintf(name, sizeof name, "%dx%d k%d s%d p%d", c[2], c[3], c[4], c[5], c[6]);
        // NaN compares: map NaN to a sentinel on both sides.
        V yq = y;
        for (size_t i = 0; i < yq.size(); ++i) if (std::isnan(yq[i])) yq[i] = 1234.f;
        for (auto& v : wy) if (std::isnan(v)) v = 1234.0;
        check((std::string("maxpool fwd y ") + name).c_str(), yq, wy);
        check((std::string("maxpool fwd idx (exact) ") + name).c_str(), idx, wi, 0.0);
        emu_launch(g1(2), B256, [&] { maxpool2d_bwd_f32(dy.data(), idx.data(), p, dx.data()); });
        check((std::string("maxpool bwd ") + name).c_str(), dx, wdx);
        x[7] = 0.25f;
        ay.assign(planes * pout, 0.0);
        for (size_t pl = 0; pl < planes; ++pl)
            for (int oh = 0; oh < (int)p.h_out; ++oh)
                for (int ow = 0; ow < (int)p.w_out; ++ow) {
                    double s = 0;
                    for (int kh = 0; kh < (int)p.k; ++kh)
                        for (int kw = 0; kw < (int)p.k; ++kw) {
                            int h = oh * p.stride - p.pad + kh, w = ow * p.stride - p.pad + kw;
                            if (h >= 0 && h < (int)p.h_in && w >= 0 && w < (int)p.w_in) s += x[pl * pin + h * p.w_in + w];
                        }
                    ay[pl * pout + oh * p.w_out + ow] = s / (p.k * p.k);
                }
        emu_launch(g1(2), B256, [&] { avgpool2d_fwd_f32(x.data(), p, y.data()); });
        check((std::string("avgpool fwd ") + name).c_str(), y, ay);
        emu_launch(g1(2), B256, [&] { avgpool2d_bwd_f32(dy.data(), p, dx.data()); });
        check((std::string("avgpool bwd ") + name).c_str(), dx, wadx);
    }
}

static void test_loss() {
    const int n = 7, k = 300;
    V logits = rnd((size_t)n * k, -5, 5), labels(n), lp((size_t)n * k), nll(n), d((size_t)n * k);
    for (int i = 0; i < n; ++i) labels[i] = (float)((i * 37) % k);
    labels[3] = 2.5f;  // not an integer: NaN loss
    logits[k + 3] = 80.f;
    emu_launch(g1(3), B256, [&] { log_softmax_ce_fwd_f32(logits.data(), labels.data(), n, k, lp.data(), nll.data()); });
    std::vector<double> wlp((size_t)n * k), wn(n), wd((size_t)n * k);
    for (int r = 0; r < n; ++r) {
        double mx = -INFINITY, se = 0;
        for (int j = 0; j < k; ++j) mx = std::max(mx, (double)logits[r * k + j]);
        for (int j = 0; j < k; ++j) se += std::exp(logits[r * k + j] - mx);
        for (int j = 0; j < k; ++j) wlp[r * k + j] = logits[r * k + j] - mx - std::log(se);
        wn[r] = r == 3 ? 1234.0 : -wlp[r * k + (int)labels[r]];
    }
    check("log_softmax_ce_fwd logprobs", lp, wlp);
    V nq = nll;
    if (std::isnan(nq[3])) nq[3] = 1234.f;
    check("log_softmax_ce_fwd row_nll (bad label -> NaN)", nq, wn);
    emu_launch(g1(3), B256, [&] { log_softmax_ce_bwd_f32(lp.data(), labels.data(), n, k, 0.5f, d.data()); });
    for (int r = 0; r < n; ++r)
        for (int j = 0; j < k; ++j) wd[r * k + j] = 0.5 * (std::exp((double)lp[r * k + j]) - ((float)j == labels[r] ? 1 : 0));
    check("log_softmax_ce_bwd", d, wd);
}

static void test_sgd() {
    for (int nesterov = 0; nesterov < 2; ++nesterov)
        for (int has_mask = 0; has_mask < 2; ++has_mask) {
            const i64 len = 1000;
            V w = rnd(len), g = rnd(len), m = rnd(len), mask(len);
            for (i64 i = 0; i < len; ++i) mask[i] = (i % 3) ? 1.f : 0.f;
            SgdParams p{0.1f, 0.9f, 5e-4f, (unsigned)nesterov};
            std::vector<double> ww(len), wm(len);
            for (i64 i = 0; i < len; ++i) {
                double gi = g[i] + (double)p.weight_decay * w[i];
                double mi = p.momentum * (double)m[i] + gi;
                double st = nesterov ? gi + p.momentum * mi : mi;
                double nw = w[i] - p.lr * st;
                if (has_mask) { nw *= mask[i]; mi *= mask[i]; }
                ww[i] = nw; wm[i] = mi;
            }
            emu_launch(g1(2), B256, [&] { sgd_step_f32(w.data(), g.data(), m.data(), has_mask ? mask.data() : nullptr, has_mask, p, len); });
            std::string tag = std::string(" nesterov=") + std::to_string(nesterov) + " mask=" + std::to_string(has_mask);
            check(("sgd w" + tag).c_str(), w, ww);
            check(("sgd m" + tag).c_str(), m, wm);
        }
}

// A random CSR of `rows` x `cols` (row 1 left empty when there is one) and its transpose, as
// SparseWeight::from_masked and SparseWeight::transpose build them.
struct Csr {
    int rows, cols;
    std::vector<unsigned> ptr, idx;
    V val;
};
static Csr random_csr(int rows, int cols, double density) {
    std::uniform_real_distribution<double> u(0, 1);
    Csr m{rows, cols, {0}, {}, {}};
    for (int r = 0; r < rows; ++r) {
        for (int c = 0; c < cols; ++c)
            if (r != 1 && u(rng) < density) {
                m.idx.push_back(c);
                m.val.push_back(rnd(1)[0]);
            }
        m.ptr.push_back((unsigned)m.idx.size());
    }
    return m;
}
static Csr transpose(const Csr& m) {
    Csr t{m.cols, m.rows, std::vector<unsigned>(m.cols + 1, 0), std::vector<unsigned>(m.idx.size()), V(m.val.size())};
    for (unsigned c : m.idx) ++t.ptr[c + 1];
    for (int c = 0; c < m.cols; ++c) t.ptr[c + 1] += t.ptr[c];
    std::vector<unsigned> next(t.ptr.begin(), t.ptr.end() - 1);
    for (int r = 0; r < m.rows; ++r)
        for (unsigned e = m.ptr[r]; e < m.ptr[r + 1]; ++e) {
            const unsigned d = next[m.idx[e]]++;
            t.idx[d] = r;
            t.val[d] = m.val[e];
        }
    return t;
}

static void test_spconv() {
    // (n, c_in, h, w, c_out, k_h, k_w, stride, pad, density %)
    int cases[][10] = {{2, 3, 9, 7, 5, 3, 3, 2, 1, 40}, {3, 4, 5, 5, 6, 1, 1, 1, 0, 50}, {2, 3, 2, 2, 4, 3, 3, 1, 1, 60},
                       {2, 2, 7, 6, 3, 2, 3, 3, 1, 70}, {1, 2, 4, 4, 3, 3, 3, 1, 0, 0}, {2, 5, 6, 5, 4, 5, 5, 2, 2, 30}};
    for (auto& c : cases) {
        Conv2dParams p{};
        p.n = c[0]; p.c_in = c[1]; p.h_in = c[2]; p.w_in = c[3]; p.c_out = c[4]; p.k_h = c[5]; p.k_w = c[6];
        p.stride = c[7]; p.pad = c[8];
        p.h_out = (p.h_in + 2 * p.pad - p.k_h) / p.stride + 1;
        p.w_out = (p.w_in + 2 * p.pad - p.k_w) / p.stride + 1;
        char name[128];
        std::snprintf(name, sizeof name, "n%d c%d %dx%d -> c%d k%dx%d s%d p%d d%d%%", c[0], c[1], c[2], c[3], c[4],
                      c[5], c[6], c[7], c[8], c[9]);
        const int n = p.n, cout = p.c_out, kk = p.c_in * p.k_h * p.k_w, hw = p.h_out * p.w_out;
        const int plane = p.h_in * p.w_in;
        Csr w = random_csr(cout, kk, c[9] / 100.0), wt = transpose(w);
        V dense((size_t)cout * kk, 0.f);
        for (int o = 0; o < cout; ++o)
            for (unsigned e = w.ptr[o]; e < w.ptr[o + 1]; ++e) dense[(size_t)o * kk + w.idx[e]] = w.val[e];
        V x = rnd((size_t)n * p.c_in * plane), bias = rnd(cout), dy = rnd((size_t)n * cout * hw);
        // The input pixel read by output (b, yo, xo) at column q, or -1 for padding.
        auto at = [&](int b, int q, int yo, int xo) -> long {
            const int ci = q / (p.k_h * p.k_w), r = (q / p.k_w) % p.k_h, s = q % p.k_w;
            const int iy = yo * p.stride + r - p.pad, ix = xo * p.stride + s - p.pad;
            if (iy < 0 || iy >= (int)p.h_in || ix < 0 || ix >= (int)p.w_in) return -1;
            return ((long)(b * p.c_in + ci) * p.h_in + iy) * p.w_in + ix;
        };
        for (int has_bias = 0; has_bias < 2; ++has_bias) {
            V y((size_t)n * cout * hw, -7.f);
            emu_launch(g1(2), B256, [&] {
                spconv_fwd_f32(x.data(), w.ptr.data(), w.idx.data(), w.val.data(), bias.data(), has_bias, p, y.data());
            });
            auto want = ref_conv(x, dense, p);
            if (has_bias)
                for (size_t i = 0; i < want.size(); ++i) want[i] += bias[(i / hw) % cout];
            check((std::string("spconv fwd bias=") + std::to_string(has_bias) + " " + name).c_str(), y, want);
        }
        std::vector<double> wdx(x.size(), 0.0), wdv(w.idx.size(), 0.0);
        for (int b = 0; b < n; ++b)
            for (int o = 0; o < cout; ++o)
                for (int yo = 0; yo < (int)p.h_out; ++yo)
                    for (int xo = 0; xo < (int)p.w_out; ++xo) {
                        const double g = dy[((size_t)(b * cout + o) * p.h_out + yo) * p.w_out + xo];
                        for (unsigned e = w.ptr[o]; e < w.ptr[o + 1]; ++e) {
                            const long xi = at(b, w.idx[e], yo, xo);
                            if (xi < 0) continue;
                            wdx[xi] += g * w.val[e];
                            wdv[e] += g * x[xi];
                        }
                    }
        V dx(x.size(), -7.f);
        emu_launch(g1(3), B256, [&] { spconv_bwd_input_f32(dy.data(), wt.ptr.data(), wt.idx.data(), wt.val.data(), p, dx.data()); });
        check((std::string("spconv bwd input ") + name).c_str(), dx, wdx);
        for (unsigned grid : {1u, 2u}) {
            V dv(w.idx.size(), -7.f);
            emu_launch(g1(grid), B256, [&] {
                spconv_bwd_weight_f32(x.data(), dy.data(), w.ptr.data(), w.idx.data(), (i64)w.idx.size(), p, dv.data());
            });
            check((std::string("spconv bwd weight grid=") + std::to_string(grid) + " " + name).c_str(), dv, wdv);
        }
        V got(dense.size(), -7.f);
        emu_launch(g1(2), B256, [&] { spconv_scatter_f32(w.ptr.data(), w.idx.data(), w.val.data(), cout, kk, got.data()); });
        check((std::string("spconv scatter ") + name).c_str(), got, std::vector<double>(dense.begin(), dense.end()), 0.0);
    }
}

int main() {
    test_gemm();
    test_conv();
    test_channel_sum();
    test_batchnorm();
    test_elementwise();
    test_pool();
    test_loss();
    test_sgd();
    test_spconv();
    std::printf("%s: %d failure(s)\n", failures ? "FAILED" : "all kernels match", failures);
    return failures ? 1 : 0;
}
