/* llama.cpp's families, one row each (model_internal.h says what the
 * fields mean; the GGUF reader in model_open.c lists the keys each reads).
 *
 *   arch    rope pairs   extra
 *   llama   adjacent     optional q/k/v/o and MLP biases; rope_freqs.weight
 *   deci    adjacent     llama with per-layer head counts and widths (sub-layer drops)
 *   qwen2   half (NEOX)  q/k/v biases
 *   qwen3   half         q/k norms before RoPE
 *   gemma2  half         norms as stored (the converter stores 1 + w), post-norms, GeGLU (tanh),
 *                        embedding * sqrt(n_embd), scale 1/sqrt(key_length) (46 layers, the 27B:
 *                        1/sqrt(n_embd / n_head)), attention softcap (default 50), final softcap
 *                        (default 30), sliding window (default 4096) on layers l % 2 == 0
 *   gemma3  half         gemma2's shape plus q/k norms, no attention softcap, final softcap only if
 *                        the key is there, window on layers l % 6 < 5 when sliding_window > 0,
 *                        those layers' RoPE rope.freq_base_swa (default 10000) unscaled; the 27B
 *                        has 62 layers
 *   phi3    half         fused attn_qkv ([q; k; v] rows) and ffn_up ([gate; up] rows); longrope
 *                        factors rope_factors_long/short.weight; llama.cpp ignores
 *                        attention.sliding_window for phi3 (it disables Phi SWA)
 *   bitnet  half         attn_sub_norm on the attention output before attn_output, ffn_sub_norm on
 *                        act(gate) * up before ffn_down, each projection's product times its optional
 *                        one-element `.scale` tensor, no biases, the head always the token embedding
 *                        (output.weight is never read), SiLU hard-coded in the graph (the key
 *                        bitnet.hidden_activation is not read).  bitnet-b1.58 is bitnet.cpp's name
 *                        for the same graph.  tc computes the linears as the reference model does
 *                        (int8 activations per token), not as ggml's kernels do (Q8_K blocks of
 *                        256 for TQ types, float for F16), and honours hidden_activation = relu2,
 *                        which BitNet b1.58 2B4T was trained with (docs/FORWARD.md) */
#include "model_internal.h"

const tc_gguf_family tc_gguf_families[] = {
    {"llama", TC_ARCH_LLAMA, TC_ROPE_ADJACENT, 0, 0, 0, 0, 0, TC_ACT_SILU, 1, 1, 1, 0, &tc_naming_gguf, 0},
    /* Mistral converts to llama (llama.cpp's graph has no sliding window for it). */
    {"llama", TC_ARCH_MISTRAL, TC_ROPE_ADJACENT, 0, 0, 0, 0, 0, TC_ACT_SILU, 1, 1, 1, 0, &tc_naming_gguf, 0},
    {"deci", TC_ARCH_LLAMA, TC_ROPE_ADJACENT, 1, 0, 0, 0, 0, TC_ACT_SILU, 0, 0, 1, 0, &tc_naming_gguf, 0},
    {"qwen2", TC_ARCH_QWEN2, TC_ROPE_HALF, 0, 0, 0, 0, 0, TC_ACT_SILU, 2, 0, 0, 0, &tc_naming_gguf, 0},
    {"qwen3", TC_ARCH_QWEN3, TC_ROPE_HALF, 0, 1, 0, 0, 0, TC_ACT_SILU, 0, 0, 0, 0, &tc_naming_gguf, 0},
    {"gemma2", TC_ARCH_GEMMA2, TC_ROPE_HALF, 0, 0, 2, 0, 46, TC_ACT_GELU_TANH, 0, 0, 0, 2, &tc_naming_gguf, 0},
    {"gemma3", TC_ARCH_GEMMA3, TC_ROPE_HALF, 0, 1, 3, 0, 62, TC_ACT_GELU_TANH, 0, 0, 0, 6, &tc_naming_gguf, 0},
    {"phi3", TC_ARCH_PHI3, TC_ROPE_HALF, 0, 0, 0, 1, 0, TC_ACT_SILU, 0, 0, 0, 0, &tc_naming_gguf_phi3, 0},
    {"bitnet", TC_ARCH_BITNET, TC_ROPE_HALF, 0, 0, 0, 0, 0, TC_ACT_SILU, 0, 0, 0, 0, &tc_naming_gguf, 1},
    {"bitnet-b1.58", TC_ARCH_BITNET, TC_ROPE_HALF, 0, 0, 0, 0, 0, TC_ACT_SILU, 0, 0, 0, 0, &tc_naming_gguf, 1},
};

const size_t tc_gguf_n_families = sizeof tc_gguf_families / sizeof tc_gguf_families[0];

const tc_gguf_family *tc_gguf_family_of(tc_arch a, int deci)
{
    for (size_t i = 0; i < tc_gguf_n_families; i++)
        if (tc_gguf_families[i].arch == a && tc_gguf_families[i].deci == deci)
            return &tc_gguf_families[i];
    return NULL;
}
