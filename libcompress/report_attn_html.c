/* The heads and tokens parts of a report as views: a text summary for the
 * terminal and four inline SVG charts for the HTML page (the importance of
 * every head as a heat map, the weight on the first token by layer, the
 * keep ratio by layer at 1 % and 5 %, and the chosen schedule's curve). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report_internal.h"
#include "tc/report.h"

/* ------------------------------------------------------------ text */

static int sink_cmp(const void *pa, const void *pb)
{
    const double *a = pa, *b = pb;
    return a[0] > b[0] ? -1 : a[0] < b[0] ? 1 : (a[1] > b[1]) - (a[1] < b[1]);
}

static void summary_heads(tc_sbuf *b, const tc_analysis *a)
{
    const tc_head_measure *hm = &a->heads;
    int *ids = NULL;
    size_t n = 0;
    tc_error e;
    if (hm->measured && tc_analysis_head_ranking(a, TC_HEAD_BY_KL, &ids, &n, &e) == TC_OK && n > 0) {
        tc_sb_printf(b, "\nheads masked alone (%llu windows, %llu predictions, NLL %.5f), least important first:\n",
                     (unsigned long long)hm->windows, (unsigned long long)hm->n_predicted, hm->nll);
        tc_sb_printf(b, "  %5s  %5s  %6sΔNLL  %9s  %6s\n", "layer", "head", "", "KL", "sink");
        size_t show = n <= 16 ? n : 12;
        for (size_t i = 0; i < n; i++) {
            if (i == show && n > 16) {
                tc_sb_printf(b, "  ... %zu more ...\n", n - show - 3);
                i = n - 3;
            }
            int l = ids[i] / a->n_heads, h = ids[i] % a->n_heads;
            const tc_head_stats *hs = &a->layers[l].heads[h];
            char sink[32];
            tc_fmt_num(sink, sizeof sink, "%.3f", hs->sink);
            tc_sb_printf(b, "  %5d  %5d  %+10.5f  %9.5f  %6s\n", l, h, hs->dnll, hs->kl, sink);
        }
        if (hm->n_curve > 0) {
            tc_sb_put(b, "  the k least important masked together:");
            for (int i = 0; i < hm->n_curve; i++)
                tc_sb_printf(b, "%s k=%d %+.5f", i ? "," : "", hm->curve_k[i], hm->curve_dnll[i]);
            tc_sb_put(b, "\n");
        }
    }
    free(ids);
    /* Heads that put most of their weight on the first token. */
    double (*sinks)[2] = malloc((size_t)a->n_layers * (size_t)(a->n_heads > 0 ? a->n_heads : 1) * sizeof *sinks);
    size_t ns = 0;
    for (int l = 0; sinks && l < a->n_layers; l++)
        for (int h = 0; a->layers[l].heads && h < a->n_heads; h++)
            if (a->layers[l].heads[h].sink > 0.5) {
                sinks[ns][0] = a->layers[l].heads[h].sink;
                sinks[ns++][1] = (double)l * a->n_heads + h;
            }
    if (ns > 0) {
        qsort(sinks, ns, sizeof *sinks, sink_cmp);
        tc_sb_printf(b, "\nsink heads (more than half their weight on the first token): %zu\n ", ns);
        for (size_t i = 0; i < ns && i < 24; i++) {
            int id = (int)sinks[i][1];
            tc_sb_printf(b, " L%d.h%d %.3f", id / a->n_heads, id % a->n_heads, sinks[i][0]);
        }
        tc_sb_put(b, ns > 24 ? " ...\n" : "\n");
    }
    free(sinks);
}

static void summary_tokens(tc_sbuf *b, const tc_analysis *a)
{
    const tc_token_measure *tm = &a->tokens;
    if (!tm->measured)
        return;
    tc_sb_printf(b, "\ntokens (%llu windows of %.0f tokens; NLL of the last prediction %.5f):\n",
                 (unsigned long long)tm->windows, tm->window_len, tm->nll_last);
    tc_sb_printf(b, "  %5s  %8s  %8s  %10s  %10s  %10s\n", "layer", "keep@1%", "keep@5%", "last>first", "mean>first",
                 "last k90");
    for (int l = 0; l < a->n_layers; l++) {
        const tc_token_stats *ts = &a->layers[l].tokens;
        char k1[32], k5[32], lf[32], mf[32], k90[32];
        tc_fmt_num(k1, sizeof k1, "%.2f", ts->keep[0]);
        tc_fmt_num(k5, sizeof k5, "%.2f", ts->keep[1]);
        tc_fmt_num(lf, sizeof lf, "%.3f", ts->measured ? ts->last.first : NAN);
        tc_fmt_num(mf, sizeof mf, "%.3f", ts->measured ? ts->mean.first : NAN);
        tc_fmt_num(k90, sizeof k90, "%.3f", ts->measured ? ts->last.keys90 : NAN);
        tc_sb_printf(b, "  %5d  %8s  %8s  %10s  %10s  %10s\n", l, k1, k5, lf, mf, k90);
    }
    if (tm->chosen >= 0) {
        const tc_schedule *s = &tm->candidates[tm->chosen];
        tc_sb_printf(b, "  schedule (within %.3g %%): %d stages from layers", 100 * tm->budget, s->n_stages);
        for (int i = 0; i + 1 < s->n_stages; i++)
            tc_sb_printf(b, "%s %d", i ? "," : "", s->boundary[i]);
        tc_sb_printf(b, ", lambda %.2f: ΔNLL %+.5f ± %.5f (%+.2f %%), FLOPs -%.1f %%\n", s->lambda, s->dnll,
                     s->dnll_se, tm->nll_last > 0 ? 100 * s->dnll / tm->nll_last : NAN, 100 * s->flop_saving);
    } else {
        tc_sb_printf(b, "  schedule: none of the %d tried stays within %.3g %%\n", tm->n_candidates, 100 * tm->budget);
    }
}

int tc_report_summary(const tc_analysis *a, char **out, tc_error *err)
{
    *out = NULL;
    if (a->n_layers < 1 || !a->layers)
        return tc_err(err, "report: invalid layer count %d", a->n_layers);
    tc_sbuf b = {0};
    tc_sb_put(&b, "");
    summary_heads(&b, a);
    summary_tokens(&b, a);
    return tc_sb_finish(&b, out, "summary", err);
}

/* ------------------------------------------------------------ charts */

/* Chart: what masking each head alone changes (KL of the next-token
 * distributions, which ranks heads), layers down, heads across, with a
 * colour scale. */
static void chart_head_importance(tc_sbuf *b, const tc_analysis *a)
{
    double lo = INFINITY, hi = -INFINITY;
    for (int l = 0; l < a->n_layers; l++)
        for (int h = 0; a->layers[l].heads && h < a->n_heads; h++) {
            const tc_head_stats *hs = &a->layers[l].heads[h];
            if (hs->measured && isfinite(hs->kl)) {
                lo = fmin(lo, hs->kl);
                hi = fmax(hi, hs->kl);
            }
        }
    if (!(hi >= lo)) {
        tc_sb_put(b, "<p class=\"note\">Heads were not masked in this run.</p>\n");
        return;
    }
    double cw = fmin(48, fmax(10, 760.0 / a->n_heads)), ch = fmin(24, fmax(12, 600.0 / a->n_layers));
    double x0 = 70, y0 = 40, width = x0 + cw * a->n_heads + 170, height = y0 + ch * a->n_layers + 20;
    tc_svg_open(b, width, height, "measured loss of masking each head");
    tc_svg_heat_axes(b, a->n_heads, a->n_layers, x0, y0, cw, ch);
    for (int l = 0; l < a->n_layers; l++) {
        double y = y0 + ch * l;
        for (int h = 0; h < a->n_heads; h++) {
            const tc_head_stats *hs = a->layers[l].heads ? &a->layers[l].heads[h] : NULL;
            double x = x0 + cw * h;
            if (!hs || !hs->measured) {
                tc_sb_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#ddd\">"
                                "<title>layer %d head %d: not masked</title></rect>",
                             x, y, cw - 1, ch - 1, l, h);
                continue;
            }
            int rgb[3];
            tc_viridis(hi > lo ? (hs->kl - lo) / (hi - lo) : 0.5, rgb);
            tc_sb_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"rgb(%d,%d,%d)\">"
                            "<title>layer %d head %d: masked alone ΔNLL %+.5f, KL %.5f; sink %.3f, previous %.3f, "
                            "self %.3f, 90%% of the mass on %.1f%% of the keys</title></rect>",
                         x, y, cw - 1, ch - 1, rgb[0], rgb[1], rgb[2], l, h, hs->dnll, hs->kl, hs->sink, hs->prev,
                         hs->diag, 100 * hs->k90);
        }
        tc_sb_put(b, "\n");
    }
    double lx = x0 + cw * a->n_heads + 30, lh = ch * a->n_layers;
    tc_sb_put(b, "<defs><linearGradient id=\"head-dnll-scale\" x1=\"0\" y1=\"1\" x2=\"0\" y2=\"0\">");
    for (int i = 0; i <= 8; i++) {
        int rgb[3];
        tc_viridis(i / 8.0, rgb);
        tc_sb_printf(b, "<stop offset=\"%.3f\" stop-color=\"rgb(%d,%d,%d)\"/>", i / 8.0, rgb[0], rgb[1], rgb[2]);
    }
    tc_sb_put(b, "</linearGradient></defs>\n");
    tc_sb_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"14\" height=\"%.1f\" fill=\"url(#head-dnll-scale)\"/>", lx, y0,
                 lh);
    tc_sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" class=\"tick\">%.4f</text>", lx + 20, y0 + 10, hi);
    tc_sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" class=\"tick\">%.4f</text>", lx + 20, y0 + lh, lo);
    tc_sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" class=\"tick\">KL</text>\n", lx + 20, y0 + lh / 2);
    tc_sb_put(b, "</svg>\n");
}

/* Chart: each head's mean weight on the first token, by layer, and the mean. */
static void chart_sinks(tc_sbuf *b, const tc_analysis *a)
{
    int any = 0;
    for (int l = 0; l < a->n_layers; l++)
        for (int h = 0; a->layers[l].heads && h < a->n_heads; h++)
            any |= isfinite(a->layers[l].heads[h].sink);
    if (!any) {
        tc_sb_put(b, "<p class=\"note\">Head statistics were not measured in this run.</p>\n");
        return;
    }
    tc_plot p = {.x0 = 70, .y0 = 30, .w = 820, .h = 240, .n = a->n_layers, .lo = 0, .hi = 1};
    tc_svg_open(b, 920, 320, "weight on the first token by layer");
    tc_plot_axes(b, &p, 0.2, "weight on the first token", 1);
    tc_sb_put(b, "<path fill=\"none\" stroke=\"#e15759\" stroke-width=\"2\" d=\"");
    int pen = 0;
    for (int l = 0; l < a->n_layers; l++) {
        double s = 0;
        int k = 0;
        for (int h = 0; a->layers[l].heads && h < a->n_heads; h++)
            if (isfinite(a->layers[l].heads[h].sink)) {
                s += a->layers[l].heads[h].sink;
                k++;
            }
        if (!k) {
            pen = 0;
            continue;
        }
        tc_sb_printf(b, "%s%.1f %.1f ", pen ? "L" : "M", tc_plot_x(&p, l), tc_plot_y(&p, s / k));
        pen = 1;
    }
    tc_sb_put(b, "\"/>\n");
    for (int l = 0; l < a->n_layers; l++)
        for (int h = 0; a->layers[l].heads && h < a->n_heads; h++) {
            double s = a->layers[l].heads[h].sink;
            if (!isfinite(s))
                continue;
            double dx = a->n_heads > 1 ? ((double)h / (a->n_heads - 1) - 0.5) * 0.5 : 0;
            tc_sb_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"#4e79a7\" fill-opacity=\"0.7\">"
                            "<title>layer %d head %d: weight on the first token %.4f</title></circle>",
                         tc_plot_x(&p, l + dx), tc_plot_y(&p, s), l, h, s);
        }
    tc_sb_put(b, "\n<rect x=\"80\" y=\"8\" width=\"12\" height=\"12\" fill=\"#4e79a7\"/>"
                 "<text x=\"97\" y=\"18\" class=\"tick\">a head</text>"
                 "<rect x=\"170\" y=\"8\" width=\"12\" height=\"12\" fill=\"#e15759\"/>"
                 "<text x=\"187\" y=\"18\" class=\"tick\">mean over heads</text>\n</svg>\n");
}

/* Chart: the keep ratio from each layer on, at 1 % and 5 %. */
static void chart_keep(tc_sbuf *b, const tc_analysis *a)
{
    static const char *const color[2] = {"#4e79a7", "#f28e2b"};
    static const char *const label[2] = {"within 1 %", "within 5 %"};
    tc_plot p = {.x0 = 70, .y0 = 30, .w = 820, .h = 240, .n = a->n_layers, .lo = 0, .hi = 1};
    tc_svg_open(b, 920, 320, "keep ratio by layer");
    tc_plot_axes(b, &p, 0.2, "share of tokens kept", 1);
    for (int k = 0; k < 2; k++) {
        tc_sb_printf(b, "<path fill=\"none\" stroke=\"%s\" stroke-width=\"2\" d=\"", color[k]);
        int pen = 0;
        for (int l = 0; l < a->n_layers; l++) {
            double v = a->layers[l].tokens.keep[k];
            if (!isfinite(v)) {
                pen = 0;
                continue;
            }
            tc_sb_printf(b, "%s%.1f %.1f ", pen ? "L" : "M", tc_plot_x(&p, l), tc_plot_y(&p, v));
            pen = 1;
        }
        tc_sb_put(b, "\"/>\n");
        for (int l = 0; l < a->n_layers; l++) {
            double v = a->layers[l].tokens.keep[k];
            if (isfinite(v))
                tc_sb_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"><title>from layer %d on, "
                                "keep %.2f of the droppable tokens: NLL %s</title></circle>\n",
                             tc_plot_x(&p, l), tc_plot_y(&p, v), color[k], l, v, label[k]);
        }
        tc_sb_printf(b, "<rect x=\"%d\" y=\"8\" width=\"12\" height=\"12\" fill=\"%s\"/><text x=\"%d\" y=\"18\" "
                        "class=\"tick\">NLL %s</text>\n",
                     80 + 140 * k, color[k], 97 + 140 * k, label[k]);
    }
    tc_sb_put(b, "</svg>\n");
}

/* Share of the droppable tokens layer l sees under schedule s. */
static double share_at(const tc_schedule *s, int l)
{
    double share = 1.0;
    for (int i = 0; i + 1 < s->n_stages; i++)
        if (l >= s->boundary[i])
            share *= s->lambda;
    return share;
}

static void schedule_path(tc_sbuf *b, const tc_plot *p, const tc_schedule *s, const char *style)
{
    tc_sb_printf(b, "<path fill=\"none\" %s d=\"", style);
    for (int l = 0; l < p->n; l++) {
        double v = share_at(s, l), x0 = p->x0 + p->w * l / p->n, x1 = p->x0 + p->w * (l + 1) / p->n;
        tc_sb_printf(b, "%s%.1f %.1f L%.1f %.1f ", l ? "L" : "M", x0, tc_plot_y(p, v), x1, tc_plot_y(p, v));
    }
    tc_sb_put(b, "\"/>\n");
}

/* Chart: the share of tokens each layer sees under the chosen schedule (the
 * other candidates faint). */
static void chart_schedule(tc_sbuf *b, const tc_analysis *a)
{
    const tc_token_measure *tm = &a->tokens;
    tc_plot p = {.x0 = 70, .y0 = 30, .w = 820, .h = 240, .n = a->n_layers, .lo = 0, .hi = 1};
    tc_svg_open(b, 920, 320, "token schedule");
    tc_plot_axes(b, &p, 0.2, "share of tokens kept", 1);
    for (int i = 0; i < tm->n_candidates; i++) {
        const tc_schedule *s = &tm->candidates[i];
        if (i == tm->chosen)
            continue;
        schedule_path(b, &p, s, "stroke=\"#bbb\" stroke-width=\"1\"");
    }
    if (tm->chosen >= 0) {
        const tc_schedule *s = &tm->candidates[tm->chosen];
        tc_sb_put(b, "<g>");
        schedule_path(b, &p, s, "stroke=\"#59a14f\" stroke-width=\"3\"");
        tc_sb_printf(b, "<title>%d stages, lambda %.2f: ΔNLL %+.5f (%+.2f %%), FLOPs -%.1f %%</title></g>\n",
                     s->n_stages, s->lambda, s->dnll, tm->nll_last > 0 ? 100 * s->dnll / tm->nll_last : NAN,
                     100 * s->flop_saving);
        for (int l = 0; l < a->n_layers; l++)
            tc_sb_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"#59a14f\"><title>layer %d: %.3f of the "
                            "droppable tokens</title></circle>",
                         tc_plot_x(&p, l), tc_plot_y(&p, share_at(s, l)), l, share_at(s, l));
        tc_sb_put(b, "\n");
    }
    tc_sb_put(b, "<rect x=\"80\" y=\"8\" width=\"12\" height=\"12\" fill=\"#59a14f\"/><text x=\"97\" y=\"18\" "
                 "class=\"tick\">chosen</text><rect x=\"170\" y=\"8\" width=\"12\" height=\"12\" fill=\"#bbb\"/>"
                 "<text x=\"187\" y=\"18\" class=\"tick\">other candidates</text>\n</svg>\n");
}

static void candidates_table(tc_sbuf *b, const tc_analysis *a)
{
    const tc_token_measure *tm = &a->tokens;
    tc_sb_put(b, "<table class=\"rank\"><thead><tr><th>stages</th><th>boundaries</th><th>λ</th><th>ΔNLL ± s.e.</th>"
                 "<th>relative</th><th>FLOPs saved</th></tr></thead><tbody>\n");
    for (int i = 0; i < tm->n_candidates; i++) {
        const tc_schedule *s = &tm->candidates[i];
        tc_sb_printf(b, "<tr><td>%d%s</td><td>", s->n_stages, i == tm->chosen ? " (chosen)" : "");
        for (int k = 0; k + 1 < s->n_stages; k++)
            tc_sb_printf(b, "%s%d", k ? ", " : "", s->boundary[k]);
        tc_sb_printf(b, "</td><td>%.2f</td><td>%+.5f ± %.5f</td><td>%+.2f %%</td><td>%.1f %%</td></tr>\n", s->lambda,
                     s->dnll, s->dnll_se, tm->nll_last > 0 ? 100 * s->dnll / tm->nll_last : NAN, 100 * s->flop_saving);
    }
    tc_sb_put(b, "</tbody></table>\n");
}

void tc_report_attn_html(tc_sbuf *b, const tc_analysis *a)
{
    const tc_head_measure *hm = &a->heads;
    tc_sb_put(b, "<h2>Measured importance of each head: KL of masking it alone</h2>\n");
    if (hm->measured) {
        tc_sb_printf(b, "<p class=\"sub\">Over %llu windows (%llu predictions, NLL %.5f).", (unsigned long long)hm->windows,
                     (unsigned long long)hm->n_predicted, hm->nll);
        for (int i = 0; i < hm->n_curve; i++)
            tc_sb_printf(b, "%s %d least important (by KL) masked together: ΔNLL %+.5f", i ? ";" : "", hm->curve_k[i],
                         hm->curve_dnll[i]);
        tc_sb_put(b, ".</p>\n");
    }
    chart_head_importance(b, a);
    tc_sb_put(b, "<h2>Attention sinks: weight on the first token</h2>\n");
    chart_sinks(b, a);
    const tc_token_measure *tm = &a->tokens;
    if (!tm->measured) {
        tc_sb_put(b, "<h2>Token dropping</h2>\n<p class=\"note\">Token dropping was not measured in this run.</p>\n");
        return;
    }
    tc_sb_printf(b, "<h2>Tokens each layer can drop</h2>\n<p class=\"sub\">From each layer on, the share of tokens "
                    "kept (ranked by the last position's attention; the first and last always kept) at which the "
                    "last position's NLL rises by at most 1 %% / 5 %%, measured over %llu windows of %.0f tokens "
                    "(NLL %.5f).</p>\n",
                 (unsigned long long)tm->windows, tm->window_len, tm->nll_last);
    chart_keep(b, a);
    tc_sb_printf(b, "<h2>PyramidDrop-style schedule</h2>\n<p class=\"sub\">Stages of equal depth, each keeping λ of "
                    "the previous stage's tokens; chosen: the largest FLOP saving within %.3g %% of the NLL.</p>\n",
                 100 * tm->budget);
    chart_schedule(b, a);
    candidates_table(b, a);
}
