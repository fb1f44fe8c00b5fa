/* The pointwise part of a step, forward and backward, in one pass over (batch, hidden), for
   the two cells PyTorch has no fused kernel for: the peephole LSTM and the CIFG LSTM.

   The recurrent matmul stays in PyTorch (MKL, oneDNN): what this replaces is the ten
   elementwise operations of a forward step and the four of a backward step, each a dispatch of
   some microseconds at this size, which was most of such a step's cost (docs/PERFORMANCE.md).
   explorer/cells/native.py compiles it at first use and falls back to PyTorch without a compiler.

   Layouts (float32, contiguous, one step): pre and gates (batch, blocks*hidden), blocks i, f, g,
   o (peephole) or f, g, o (CIFG); every other array (batch, hidden); the peepholes (hidden,).

   No -ffast-math: it would let the compiler assume no NaN, and a diverging run must show its
   NaN for the trainer to stop it. exp is written out so that the compiler vectorises the loop
   with no library call (glibc's vector exp took ten times as long without -ffast-math). */
#include <stdint.h>
#include <string.h>

/* e^r − 1 − r for |r| <= ln2 / 2, over r²: Cephes' polynomial for expf (about 1 ulp there). */
static inline float exp_polynomial(float r) {
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    return p * r + 5.0000001201e-1f;
}

/* e^x, x clipped to [-80, 80]: e^±80 is finite and normal in float32, and σ and tanh are
   saturated to float precision well before it. x = n ln2 + r, e^r from the polynomial, 2^n
   written into the exponent bits. A NaN passes the clip (every comparison with it is false)
   and reaches r, so the result is NaN. */
static inline float exp_clipped(float x) {
    x = x > 80.0f ? 80.0f : x;
    x = x < -80.0f ? -80.0f : x;
    float finite = x == x ? x : 0.0f;                                   /* n from a number, never NaN */
    float n = (finite * 1.44269504088896341f + 12582912.0f) - 12582912.0f;   /* round(x / ln2): 1.5 * 2^23 */
    float r = x - n * 0.693359375f;                                     /* ln2 in two parts, exact first */
    r = r + n * 2.12194440e-4f;
    float p = exp_polynomial(r) * r * r + r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;                            /* 2^n, |n| <= 116 */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

static inline float sigmoid(float x) { return 1.0f / (1.0f + exp_clipped(-x)); }

/* tanh x = 1 − 2 / (e^{2x} + 1), exact at saturation; near 0, where that subtraction would
   lose the digits (a small cell state's tanh, and w_co's gradient with it), (e^{2x} − 1) /
   (e^{2x} − 1 + 2) with e^{2x} − 1 from the polynomial, never formed as e^{2x} minus 1. */
static inline float tanh_(float x) {
    float y = 2.0f * x;
    float small = y * y * exp_polynomial(y) + y;                      /* e^y − 1, for |y| <= ln2 / 2 */
    float near_zero = small / (small + 2.0f);
    float far = 1.0f - 2.0f / (exp_clipped(y) + 1.0f);
    return (y < 0.34657359f && y > -0.34657359f) ? near_zero : far;   /* a NaN takes `far`, NaN too */
}

/* The peephole LSTM (explorer/cells/lstm.py, peephole.py):
     i = σ(a_i + w_ci c_{t-1})   f = σ(a_f + w_cf c_{t-1})   g = tanh(a_g)
     c_t = f c_{t-1} + i g       o = σ(a_o + w_co c_t)        h_t = o tanh(c_t)
   One forward step. pre holds a + W_hh h_{t-1} (the input term and both biases included). */
void peephole_forward(long batch, long hidden, const float *pre, const float *c_previous,
                      const float *w_ci, const float *w_cf, const float *w_co,
                      float *gates, float *cell, float *tanh_cell, float *out) {
    const long H = hidden;
    for (long b = 0; b < batch; b++) {
        const float *a = pre + b * 4 * H, *cp = c_previous + b * H;
        float *gate = gates + b * 4 * H, *c = cell + b * H, *tc = tanh_cell + b * H, *h = out + b * H;
#pragma omp simd
        for (long u = 0; u < H; u++) {
            float i = sigmoid(a[u] + w_ci[u] * cp[u]);
            float f = sigmoid(a[H + u] + w_cf[u] * cp[u]);
            float g = tanh_(a[2 * H + u]);
            float c_t = f * cp[u] + i * g;
            float o = sigmoid(a[3 * H + u] + w_co[u] * c_t);
            float tanh_c = tanh_(c_t);
            gate[u] = i;
            gate[H + u] = f;
            gate[2 * H + u] = g;
            gate[3 * H + u] = o;
            c[u] = c_t;
            tc[u] = tanh_c;
            h[u] = o * tanh_c;
        }
    }
}

/* One backward step. grad_hidden: dL/dh_t in full (from above and through W_hh from step t+1).
   carried: dL/dc_t through c_{t+1} on entry, dL/dc_{t-1} through c_t on return. Writes
   dL/dc_t and δ_t, the pre-activations' gradients (batch, 4*hidden), and adds this step's
   share of the peepholes' gradients to peephole_sums (3*hidden: w_ci, w_cf, w_co), in double:
   each is a sum over batch and time of δ times a cell state. */
void peephole_backward(long batch, long hidden, const float *grad_hidden, const float *gates,
                       const float *cell_previous, const float *cell, const float *tanh_cell,
                       const float *w_ci, const float *w_cf, const float *w_co,
                       float *carried, float *grad_cell, float *grad_pre, double *peephole_sums) {
    const long H = hidden;
    double *sum_ci = peephole_sums, *sum_cf = peephole_sums + H, *sum_co = peephole_sums + 2 * H;
    for (long b = 0; b < batch; b++) {
        const float *dh = grad_hidden + b * H, *gate = gates + b * 4 * H;
        const float *cp = cell_previous + b * H, *c = cell + b * H, *tc = tanh_cell + b * H;
        float *carry = carried + b * H, *dc_out = grad_cell + b * H, *delta = grad_pre + b * 4 * H;
#pragma omp simd
        for (long u = 0; u < H; u++) {
            float i = gate[u], f = gate[H + u], g = gate[2 * H + u], o = gate[3 * H + u];
            float d_o = dh[u] * tc[u] * o * (1.0f - o);                         /* through h = o tanh c */
            float dc = carry[u] + dh[u] * o * (1.0f - tc[u] * tc[u]) + d_o * w_co[u];   /* and c_t -> o */
            float d_i = dc * g * i * (1.0f - i);
            float d_f = dc * cp[u] * f * (1.0f - f);
            float d_g = dc * i * (1.0f - g * g);
            carry[u] = dc * f + d_i * w_ci[u] + d_f * w_cf[u];                  /* c_{t-1} -> c_t, i, f */
            dc_out[u] = dc;
            delta[u] = d_i;
            delta[H + u] = d_f;
            delta[2 * H + u] = d_g;
            delta[3 * H + u] = d_o;
            sum_ci[u] += (double)(d_i * cp[u]);
            sum_cf[u] += (double)(d_f * cp[u]);
            sum_co[u] += (double)(d_o * c[u]);
        }
    }
}

/* The CIFG LSTM (explorer/cells/cifg.py): i = 1 − f,
     f = σ(a_f)   g = tanh(a_g)   o = σ(a_o)   c_t = f c_{t-1} + (1 − f) g   h_t = o tanh(c_t)
   One forward step, as peephole_forward with blocks f, g, o and no peepholes. */
void cifg_forward(long batch, long hidden, const float *pre, const float *c_previous,
                  float *gates, float *cell, float *tanh_cell, float *out) {
    const long H = hidden;
    for (long b = 0; b < batch; b++) {
        const float *a = pre + b * 3 * H, *cp = c_previous + b * H;
        float *gate = gates + b * 3 * H, *c = cell + b * H, *tc = tanh_cell + b * H, *h = out + b * H;
#pragma omp simd
        for (long u = 0; u < H; u++) {
            float f = sigmoid(a[u]);
            float g = tanh_(a[H + u]);
            float o = sigmoid(a[2 * H + u]);
            float c_t = f * cp[u] + (1.0f - f) * g;
            float tanh_c = tanh_(c_t);
            gate[u] = f;
            gate[H + u] = g;
            gate[2 * H + u] = o;
            c[u] = c_t;
            tc[u] = tanh_c;
            h[u] = o * tanh_c;
        }
    }
}

/* One backward step of the CIFG, as peephole_backward: dc_t reaches the forget gate's
   pre-activation twice, through f c_{t-1} and through (1 − f) g. */
void cifg_backward(long batch, long hidden, const float *grad_hidden, const float *gates,
                   const float *cell_previous, const float *tanh_cell,
                   float *carried, float *grad_cell, float *grad_pre) {
    const long H = hidden;
    for (long b = 0; b < batch; b++) {
        const float *dh = grad_hidden + b * H, *gate = gates + b * 3 * H;
        const float *cp = cell_previous + b * H, *tc = tanh_cell + b * H;
        float *carry = carried + b * H, *dc_out = grad_cell + b * H, *delta = grad_pre + b * 3 * H;
#pragma omp simd
        for (long u = 0; u < H; u++) {
            float f = gate[u], g = gate[H + u], o = gate[2 * H + u];
            float dc = carry[u] + dh[u] * o * (1.0f - tc[u] * tc[u]);
            carry[u] = dc * f;
            dc_out[u] = dc;
            delta[u] = dc * (cp[u] - g) * f * (1.0f - f);
            delta[H + u] = dc * (1.0f - f) * (1.0f - g * g);
            delta[2 * H + u] = dh[u] * tc[u] * o * (1.0f - o);
        }
    }
}
