// `ptq table`: quantization recipes on a real Llama-architecture model.
//
// Loads a llama2.c checkpoint + tokenizer (default: ../shared/data/stories260K), quantizes a
// copy of the model with each recipe (recipe.hpp: weight format / granularity, activation
// format, algorithm chain, calibration set), evaluates it on an evaluation text (default
// tinystories/valid.txt, protocol of docs/DESIGN.md §16) and prints a table. The seven linears of
// every layer are quantized; the token embedding and the classifier stay fp32 and are not
// counted in the effective bits.
//
//   ptq table [--data DIR] [--recipe R]... [--set NAME]... [--calib SET] [--calib-tokens N]
//             [--non-sequential] [--csv | --markdown] [--report FILE] [--list]
#include "llama2c_checkpoint.hpp"
#include "llama2c_tokenizer.hpp"
#include "forward.hpp"
#include "evaluation.hpp"
#include "calibration_text.hpp"
#include "quantize_model.hpp"
#include "recipe.hpp"
#include "table.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <limits>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

namespace {

namespace fs = std::filesystem;
using namespace ptq::llama;
using clock_type = std::chrono::steady_clock;

/// Progress lines with '\r' only on a terminal; otherwise only the final line of each step.
bool stderr_is_tty() {
    static const bool tty = isatty(2) != 0;
    return tty;
}

double since(clock_type::time_point t0) { return std::chrono::duration<double>(clock_type::now() - t0).count(); }

std::string fmt(const char* f, double v) {
    char b[64];
    std::snprintf(b, sizeof b, f, v);
    return b;
}

// ---------------------------------------------------------------------------------------------
// Named recipe sets
// ---------------------------------------------------------------------------------------------

struct RecipeSet {
    std::string name, title, description;
    std::vector<std::string> recipes;
};

std::vector<RecipeSet> recipe_sets() {
    std::vector<RecipeSet> sets;
    {
        RecipeSet s{"default",
                    "Default table",
                    "The README's main job: the reference RTN point, GPTQ / AWQ / AWQ+GPTQ at 4 and 3 bits, and "
                    "MXINT4 W4A8 with and without L2QER.",
                    {}};
        for (const char* r : {"w=int4-asym:g32,algo=rtn", "w=int4-asym:g32,algo=gptq", "w=int4-asym:g32,algo=awq",
                              "w=int4-asym:g32,algo=awq+gptq", "w=int3-asym:g32,algo=rtn", "w=int3-asym:g32,algo=gptq",
                              "w=int3-asym:g32,algo=awq+gptq", "w=mxint4:b16,a=mxint8-b16,algo=rtn",
                              "w=mxint4:b16,a=mxint8-b16,algo=rtn+l2qer8"})
            s.recipes.push_back(r);
        sets.push_back(s);
    }
    {
        RecipeSet s{
            "bits",
            "(a) Bits x granularity x symmetric/asymmetric, RTN vs GPTQ (OPT/BLOOM study, ZeroQuant-V2)",
            "Weight-only. Granularities: per-channel (pc), groups of 64 and 32 along in_features. In this model "
            "in_features is 64 (wq, wk, wv, wo, w1, w3) or 172 (w2), so g64 is per-channel for six of the seven "
            "linears (it only splits w2 into 64+64+44), and g128 would be per-channel for all but w2: g32 is "
            "the only truly fine grouping. int5-asym:pc is added for the equal-effective-bits comparison.",
            {}};
        for (int bits : {8, 4, 3, 2})
            for (const char* g : {"pc", "g64", "g32"})
                for (const char* sym : {"sym", "asym"})
                    for (const char* a : {"rtn", "gptq"})
                        s.recipes.push_back("w=int" + std::to_string(bits) + "-" + sym + ":" + g + ",algo=" + a);
        s.recipes.push_back("w=int5-asym:pc,algo=rtn");
        s.recipes.push_back("w=int5-asym:pc,algo=gptq");
        sets.push_back(s);
    }
    {
        RecipeSet s{"mx",
                    "(b) INT vs MXINT at W4A8 and W3A8 with RTN, GPTQ, SQ, AWQ, SQ+GPTQ, AWQ+GPTQ (MX paper, Table 1)",
                    "INT: symmetric weights in groups of 32 (fp16 scale) with per-token INT8 activations; MXINT: "
                    "block 32 (8-bit shared exponent) with MXINT8 block-32 activations. Every linear's input is "
                    "quantized; SmoothQuant/AWQ scales are applied explicitly (see the notes).",
                    {}};
        for (int bits : {4, 3})
            for (const char* a : {"rtn", "gptq", "sq", "awq", "sq+gptq", "awq+gptq"}) {
                s.recipes.push_back("w=int" + std::to_string(bits) + "-sym:g32,a=int8,algo=" + a);
                s.recipes.push_back("w=mxint" + std::to_string(bits) + ":b32,a=mxint8-b32,algo=" + a);
            }
        sets.push_back(s);
    }
    {
        RecipeSet s{"lqer",
                    "(c) Plain MXINT vs LQER vs L2QER at W4A8 (LQER, Table 2), and LoRC on top of GPTQ (ZeroQuant-V2)",
                    "LQER/L2QER: MXINT4 block-16 weights, MXINT8 block-16 activations (also on the low-rank path), "
                    "factors in MXINT8 block 16 (counted in the bits). LoRC: weight-only GPTQ int3-asym g32 and "
                    "int4-asym per-channel with fp16 factors (counted as 16 bits).",
                    {}};
        s.recipes.push_back("w=mxint4:b16,a=mxint8-b16,algo=rtn");
        for (const char* k : {"lqer", "l2qer"})
            for (int r : {4, 8, 16})
                s.recipes.push_back(std::string("w=mxint4:b16,a=mxint8-b16,algo=rtn+") + k + std::to_string(r));
        for (const char* w : {"int3-asym:g32", "int4-asym:pc"}) {
            s.recipes.push_back(std::string("w=") + w + ",algo=gptq");
            for (int r : {4, 8, 16}) s.recipes.push_back(std::string("w=") + w + ",algo=gptq+lorc" + std::to_string(r));
        }
        sets.push_back(s);
    }
    {
        RecipeSet s{"calib",
                    "(d) Calibration data: TinyStories-train vs WikiText-2, evaluated on TinyStories (LLMC, Table 1)",
                    "Same token budget for both sets; weight-only.",
                    {}};
        for (const char* w : {"int3-asym:g32", "int4-asym:pc", "int2-asym:g32"})
            for (const char* a : {"gptq", "awq"})
                for (const char* c : {"tinystories", "wikitext"})
                    s.recipes.push_back(std::string("w=") + w + ",algo=" + a + ",calib=" + c);
        sets.push_back(s);
    }
    return sets;
}

// ---------------------------------------------------------------------------------------------
// Running recipes
// ---------------------------------------------------------------------------------------------

struct Row {
    RecipeSpec spec;
    std::string key;  // canonical text
    QuantReport rep;
    double nll = 0, ppl = 0, eval_s = 0;
    bool fp32 = false;
};

struct Runner {
    const Model& fp32;
    const Tokenizer& tok;
    const std::vector<std::vector<int>>& docs;
    fs::path data;
    std::size_t calib_tokens;
    bool sequential;
    std::map<std::string, CalibData> calib;
    std::map<std::string, Row> done;  // by canonical text
    double fp32_eval_s = 0;
    double fp32_nll = 0;

    /// The calibration set `name` with `budget` tokens (0: the program-wide budget), loaded once.
    CalibData& calib_set(const std::string& name, std::size_t budget = 0) {
        if (budget == 0) budget = calib_tokens;
        const std::string key = name + " (" + std::to_string(budget) + "-token budget)";
        auto it = calib.find(key);
        if (it != calib.end()) return it->second;
        const auto t0 = clock_type::now();
        CalibData c = load_calibration(name, data, tok, fp32.config.seq_len, budget);
        std::fprintf(stderr, "calibration set %s: %zu sequences, %zu tokens (tokenized in %.2f s)\n", key.c_str(),
                     c.seqs.size(), c.tokens, since(t0));
        return calib.emplace(key, std::move(c)).first->second;
    }

    EvalResult eval(const Model& m, const std::string& label) {
        std::size_t last = 101;
        auto r = evaluate(m, docs, {}, [&](std::size_t d, std::size_t total) {
            const std::size_t pct = 100 * d / total;
            if (stderr_is_tty() && (pct / 10 != last / 10 || d == total)) {
                std::fprintf(stderr, "\r  [%s] evaluating %3zu%%   ", label.c_str(), pct);
                last = pct;
            }
        });
        if (stderr_is_tty()) std::fprintf(stderr, "\n");
        return r;
    }

    void run_fp32() {
        const auto t0 = clock_type::now();
        const auto r = eval(fp32, "fp32");
        fp32_eval_s = since(t0);
        fp32_nll = r.mean_nll();
        Row row;
        row.key = "fp32";
        row.fp32 = true;
        row.nll = r.mean_nll();
        row.ppl = r.perplexity();
        row.eval_s = fp32_eval_s;
        row.rep.effective_bits = 32;
        done.emplace("fp32", row);
    }

    const Row& run(const RecipeSpec& spec, std::size_t index, std::size_t total) {
        const std::string key = spec.text();
        if (auto it = done.find(key); it != done.end()) return it->second;
        std::fprintf(stderr, "[%zu/%zu] %s\n", index, total, key.c_str());
        Row row;
        row.spec = spec;
        row.key = key;
        CalibData* c =
            spec.needs_calibration() ? &calib_set(spec.calib, spec.calib_tokens ? *spec.calib_tokens : 0) : nullptr;
        const Model m = quantize_model(fp32, spec, c, sequential, &row.rep, [&](const std::string& msg) {
            if (stderr_is_tty()) std::fprintf(stderr, "\r  quantizing: %s   ", msg.c_str());
        });
        std::fprintf(stderr, "%s  quantized in %.2f s (calibration capture %.2f s), %.3f bits/weight%s%s\n",
                     stderr_is_tty() ? "\r" : "", row.rep.seconds, row.rep.calib_seconds, row.rep.effective_bits,
                     row.rep.notes.empty() ? "" : "; ", row.rep.notes.c_str());
        const auto t0 = clock_type::now();
        const auto r = eval(m, key);
        row.eval_s = since(t0);
        row.nll = r.mean_nll();
        row.ppl = r.perplexity();
        std::fprintf(stderr, "  mean NLL %.4f (dNLL %+.4f)\n", row.nll, row.nll - fp32_nll);
        return done.emplace(key, std::move(row)).first->second;
    }

    const Row* find(const RecipeSpec& s) const {
        auto it = done.find(s.text());
        return it == done.end() ? nullptr : &it->second;
    }
};

// ---------------------------------------------------------------------------------------------
// Tables
// ---------------------------------------------------------------------------------------------

enum class Style { text, csv, markdown };

std::string calib_text(const Row& r) {
    if (r.fp32 || !r.spec.needs_calibration()) return "-";
    std::string s = r.spec.calib;
    if (r.spec.sequential && !*r.spec.sequential) s += " (non-seq)";
    return s;
}

void print_table(std::ostream& out, const std::vector<const Row*>& rows, const Runner& run, Style style) {
    struct Cells {
        std::vector<std::string> c;
    };
    const std::vector<std::string> head = {"weights", "acts", "algo",          "calib",   "bits/w", "mean NLL",
                                           "ppl",     "dNLL", "% of RTN dNLL", "quant s", "eval s"};
    std::vector<Cells> body;
    for (const Row* r : rows) {
        Cells c;
        const double d = r->nll - run.fp32_nll;
        std::string pct = "-";
        if (!r->fp32) {
            if (const Row* b = run.find(r->spec.rtn_baseline())) {
                const double db = b->nll - run.fp32_nll;
                if (std::fabs(db) > 1e-12) pct = fmt("%.1f", 100.0 * d / db);
            }
        }
        c.c = {r->fp32 ? "fp32" : r->spec.weight_text(),
               r->fp32 ? "fp32" : r->spec.act,
               r->fp32 ? "-" : r->spec.algo_text(),
               calib_text(*r),
               fmt("%.3f", r->rep.effective_bits),
               fmt("%.4f", r->nll),
               fmt("%.4f", r->ppl),
               fmt("%+.4f", d),
               pct,
               fmt("%.2f", r->rep.seconds),
               fmt("%.2f", r->eval_s)};
        body.push_back(c);
    }
    if (style == Style::csv) {
        auto line = [&](const std::vector<std::string>& v) {
            for (std::size_t i = 0; i < v.size(); ++i) out << (i ? "," : "") << v[i];
            out << "\n";
        };
        line(head);
        for (auto& b : body) line(b.c);
        return;
    }
    if (style == Style::markdown) {
        out << "|";
        for (auto& h : head) out << " " << h << " |";
        out << "\n|";
        for (std::size_t i = 0; i < head.size(); ++i) out << (i < 4 ? "---|" : "---:|");
        out << "\n";
        for (auto& b : body) {
            out << "|";
            for (auto& x : b.c) out << " " << x << " |";
            out << "\n";
        }
        return;
    }
    std::vector<std::size_t> w(head.size());
    for (std::size_t i = 0; i < head.size(); ++i) {
        w[i] = head[i].size();
        for (auto& b : body) w[i] = std::max(w[i], b.c[i].size());
    }
    auto line = [&](const std::vector<std::string>& v) {
        for (std::size_t i = 0; i < v.size(); ++i) {
            const std::string pad(w[i] - v[i].size(), ' ');
            out << (i ? "  " : "") << (i < 4 ? v[i] + pad : pad + v[i]);
        }
        out << "\n";
    };
    line(head);
    for (auto& b : body) line(b.c);
}

// ---------------------------------------------------------------------------------------------
// Findings: each compares measured numbers and says whether the model agrees with a paper.
// ---------------------------------------------------------------------------------------------

struct Finding {
    std::string claim, verdict, evidence;
};

struct Findings {
    const Runner& run;
    std::vector<Finding> out;

    std::optional<double> dnll(const std::string& recipe) const {
        const Row* r = run.find(parse_recipe(recipe));
        if (!r) return std::nullopt;
        return r->nll - run.fp32_nll;
    }
    std::optional<double> bits(const std::string& recipe) const {
        const Row* r = run.find(parse_recipe(recipe));
        if (!r) return std::nullopt;
        return r->rep.effective_bits;
    }
    static std::string d4(double v) { return fmt("%.4f", v); }

    /// Counts how many of the (a, b) pairs have dNLL(a) < dNLL(b); verdict from the majority.
    void pairs(const std::string& claim, const std::vector<std::pair<std::string, std::string>>& ps,
               const std::string& a_label, const std::string& b_label, bool all_required = false) {
        int wins = 0, n = 0;
        std::string ev;
        for (const auto& [a, b] : ps) {
            const auto da = dnll(a), db = dnll(b);
            if (!da || !db) continue;
            ++n;
            if (*da < *db) ++wins;
            if (ev.size() < 600) {
                const RecipeSpec s = parse_recipe(a);
                ev += (ev.empty() ? "" : "; ") + s.weight_text() + (s.act != "none" ? " " + s.act : "") + ": " +
                      a_label + " " + d4(*da) + " vs " + b_label + " " + d4(*db);
            }
        }
        if (n == 0) return;
        const bool agree = all_required ? wins == n : 2 * wins > n;
        const bool partly = !agree && wins > 0;
        out.push_back({claim,
                       std::string(agree    ? "agrees"
                                   : partly ? "partly (disagrees overall)"
                                            : "disagrees") +
                           " (" + std::to_string(wins) + "/" + std::to_string(n) + ")",
                       "dNLL " + ev});
    }

    void bits_set() {
        {  // INT8 nearly lossless
            double worst = 0;
            std::string which;
            int n = 0;
            for (const char* s : {"sym", "asym"})
                for (const char* g : {"pc", "g64", "g32"}) {
                    const std::string r = std::string("w=int8-") + s + ":" + g + ",algo=rtn";
                    if (auto d = dnll(r)) {
                        ++n;
                        if (std::fabs(*d) >= std::fabs(worst)) {
                            worst = *d;
                            which = parse_recipe(r).weight_text();
                        }
                    }
                }
            if (n)
                out.push_back({"INT8 weight-only RTN is nearly lossless (|dNLL| < 0.5% of the fp32 NLL)",
                               std::fabs(worst) < 0.005 * run.fp32_nll ? "agrees" : "disagrees",
                               "worst of " + std::to_string(n) + " INT8 rows: " + which + " dNLL " + d4(worst) +
                                   " (fp32 NLL " + d4(run.fp32_nll) + ")"});
        }
        std::vector<std::pair<std::string, std::string>> gr, fine, asym;
        for (int b : {4, 3, 2})
            for (const char* g : {"pc", "g64", "g32"})
                for (const char* s : {"sym", "asym"}) {
                    const std::string w = "w=int" + std::to_string(b) + "-" + s + ":" + g;
                    gr.push_back({w + ",algo=gptq", w + ",algo=rtn"});
                }
        pairs("GPTQ beats RTN at 4, 3 and 2 bits (every granularity, sym and asym)", gr, "GPTQ", "RTN");
        for (int b : {4, 3, 2})
            for (const char* s : {"sym", "asym"})
                for (const char* a : {"rtn", "gptq"}) {
                    const std::string w = "w=int" + std::to_string(b) + "-" + s;
                    fine.push_back({w + ":g32,algo=" + a, w + ":pc,algo=" + a});
                    asym.push_back({"w=int" + std::to_string(b) + "-asym:" + "g32,algo=" + a,
                                    "w=int" + std::to_string(b) + "-sym:g32,algo=" + a});
                    asym.push_back({"w=int" + std::to_string(b) + "-asym:" + "pc,algo=" + a,
                                    "w=int" + std::to_string(b) + "-sym:pc,algo=" + a});
                }
        pairs("Finer granularity (g32) beats per-channel at the same bit width (RTN and GPTQ)", fine, "g32", "pc");
        // Asymmetric pairs are duplicated per (sym) loop iteration; deduplicate.
        std::sort(asym.begin(), asym.end());
        asym.erase(std::unique(asym.begin(), asym.end()), asym.end());
        pairs("Asymmetric beats symmetric at low bit widths (4/3/2 bits, RTN and GPTQ)", asym, "asym", "sym");
        {  // GPTQ's gain grows as bits drop (asym g32 and pc)
            std::string ev;
            int ok = 0, n = 0;
            for (const char* g : {"g32", "pc"}) {
                std::optional<double> prev_gain;
                for (int b : {4, 3, 2}) {
                    const std::string w = "w=int" + std::to_string(b) + "-asym:" + g;
                    auto dr = dnll(w + ",algo=rtn"), dg = dnll(w + ",algo=gptq");
                    if (!dr || !dg) continue;
                    const double gain = *dr - *dg;
                    ev += (ev.empty() ? "" : "; ") + std::string("int") + std::to_string(b) + "-asym:" + g + " gain " +
                          d4(gain);
                    if (prev_gain) {
                        ++n;
                        if (gain > *prev_gain) ++ok;
                    }
                    prev_gain = gain;
                }
            }
            if (n)
                out.push_back({"GPTQ's improvement over RTN (dNLL_RTN - dNLL_GPTQ) grows as the bit width drops",
                               std::string(2 * ok > n ? "agrees" : "disagrees") + " (" + std::to_string(ok) + "/" +
                                   std::to_string(n) + ")",
                               ev});
        }
        {  // fewer bits fine vs more bits coarse at about equal effective bits
            std::string ev;
            int fine_wins = 0, n = 0;
            for (const char* a : {"rtn", "gptq"})
                for (auto [f, c] :
                     {std::pair{"w=int4-asym:g32", "w=int5-asym:pc"}, std::pair{"w=int3-asym:g32", "w=int4-asym:pc"},
                      std::pair{"w=int2-asym:g32", "w=int3-asym:pc"}}) {
                    const std::string fr = std::string(f) + ",algo=" + a, cr = std::string(c) + ",algo=" + a;
                    auto df = dnll(fr), dc = dnll(cr);
                    auto bf = bits(fr), bc = bits(cr);
                    if (!df || !dc) continue;
                    ++n;
                    if (*df < *dc) ++fine_wins;
                    ev += (ev.empty() ? "" : "; ") + std::string(a) + " " + parse_recipe(fr).weight_text() + " (" +
                          fmt("%.2f", *bf) + " b) " + d4(*df) + " vs " + parse_recipe(cr).weight_text() + " (" +
                          fmt("%.2f", *bc) + " b) " + d4(*dc);
                }
            if (n)
                out.push_back(
                    {"At about equal effective bits, fewer bits with fine groups (g32) beat more bits per-channel "
                     "(the fine variant here even has 0.2-0.4 fewer bits/weight)",
                     std::string(2 * fine_wins > n ? "agrees"
                                 : fine_wins       ? "partly (disagrees overall)"
                                                   : "disagrees") +
                         " (" + std::to_string(fine_wins) + "/" + std::to_string(n) + ")",
                     "dNLL " + ev});
        }
    }

    void mx_set() {
        std::vector<std::pair<std::string, std::string>> mxint, gptq, awq, sq;
        for (int b : {4, 3}) {
            const std::string i = "w=int" + std::to_string(b) + "-sym:g32,a=int8,algo=";
            const std::string m = "w=mxint" + std::to_string(b) + ":b32,a=mxint8-b32,algo=";
            for (const char* a : {"rtn", "gptq", "sq", "awq", "sq+gptq", "awq+gptq"}) mxint.push_back({m + a, i + a});
            for (const auto& p : {i, m}) {
                gptq.push_back({p + "gptq", p + "rtn"});
                awq.push_back({p + "awq", p + "rtn"});
                sq.push_back({p + "sq", p + "rtn"});
            }
        }
        pairs("MXINT (block 32, W+A) beats INT (g32 weights, per-token INT8 activations) at the same bit width", mxint,
              "MXINT", "INT");
        pairs("GPTQ improves on RTN for both INT and MXINT", gptq, "GPTQ", "RTN");
        pairs("AWQ improves on RTN for both INT and MXINT", awq, "AWQ", "RTN");
        pairs("SmoothQuant alone improves on RTN (W4A8/W3A8)", sq, "SQ", "RTN");
        {  // best combination
            std::string ev;
            int ok = 0, n = 0;
            for (int b : {4, 3})
                for (const std::string& p : {"w=int" + std::to_string(b) + "-sym:g32,a=int8,algo=",
                                             "w=mxint" + std::to_string(b) + ":b32,a=mxint8-b32,algo="}) {
                    std::string best;
                    double bd = 1e30;
                    int have = 0;
                    for (const char* a : {"rtn", "gptq", "sq", "awq", "sq+gptq", "awq+gptq"})
                        if (auto d = dnll(p + a)) {
                            ++have;
                            if (*d < bd) {
                                bd = *d;
                                best = a;
                            }
                        }
                    if (have < 6) continue;
                    ++n;
                    if (best == "sq+gptq" || best == "awq+gptq") ++ok;
                    const RecipeSpec s = parse_recipe(p + "rtn");
                    ev += (ev.empty() ? "" : "; ") + s.weight_text() + " " + s.act + ": best " + best + " (" + d4(bd) +
                          ")";
                }
            if (n)
                out.push_back(
                    {"A transformation followed by GPTQ (SQ+GPTQ or AWQ+GPTQ) is the best of the six algorithms",
                     std::string(2 * ok > n ? "agrees"
                                 : ok       ? "partly (disagrees overall)"
                                            : "disagrees") +
                         " (" + std::to_string(ok) + "/" + std::to_string(n) + ")",
                     ev});
        }
    }

    void lqer_set() {
        const std::string base = "w=mxint4:b16,a=mxint8-b16,algo=rtn";
        std::vector<std::pair<std::string, std::string>> l2_vs_l, lq_vs_plain, l2_vs_plain, lorc;
        for (int r : {4, 8, 16}) {
            l2_vs_l.push_back({base + "+l2qer" + std::to_string(r), base + "+lqer" + std::to_string(r)});
            lq_vs_plain.push_back({base + "+lqer" + std::to_string(r), base});
            l2_vs_plain.push_back({base + "+l2qer" + std::to_string(r), base});
            for (const char* w : {"w=int3-asym:g32", "w=int4-asym:pc"})
                lorc.push_back({std::string(w) + ",algo=gptq+lorc" + std::to_string(r), std::string(w) + ",algo=gptq"});
        }
        pairs("L2QER (activation-scaled SVD) beats LQER at the same rank (W4A8 MXINT4)", l2_vs_l, "L2QER", "LQER");
        pairs("LQER improves on plain MXINT4 W4A8", lq_vs_plain, "LQER", "plain");
        pairs("L2QER improves on plain MXINT4 W4A8", l2_vs_plain, "L2QER", "plain");
        {  // monotone in rank
            std::string ev;
            bool mono = true;
            int n = 0;
            for (const char* k : {"+lqer", "+l2qer"}) {
                std::optional<double> prev;
                for (int r : {4, 8, 16}) {
                    auto d = dnll(base + k + std::to_string(r));
                    if (!d) continue;
                    ++n;
                    ev += (ev.empty() ? "" : "; ") + std::string(k + 1) + std::to_string(r) + " " + d4(*d);
                    if (prev && *d > *prev) mono = false;
                    prev = d;
                }
            }
            if (n)
                out.push_back({"The low-rank correction improves with the rank (4 < 8 < 16)",
                               mono ? "agrees" : "disagrees", "dNLL " + ev});
        }
        pairs("LoRC (rank 4/8/16, fp16 factors) improves GPTQ (ZeroQuant-V2)", lorc, "GPTQ+LoRC", "GPTQ");
    }

    void calib_set() {
        std::vector<std::pair<std::string, std::string>> ts, ts_g, ts_a;
        std::string ev;
        double sens_g = 0, sens_a = 0;
        int n = 0;
        for (const char* w : {"w=int3-asym:g32", "w=int4-asym:pc", "w=int2-asym:g32"})
            for (const char* a : {"gptq", "awq"}) {
                const std::string p = std::string(w) + ",algo=" + a + ",calib=";
                ts.push_back({p + "tinystories", p + "wikitext"});
            }
        pairs("In-domain calibration (TinyStories-train) beats out-of-domain (WikiText-2) on TinyStories", ts,
              "TinyStories", "WikiText-2");
        for (const char* w : {"w=int3-asym:g32", "w=int4-asym:pc", "w=int2-asym:g32"}) {
            const std::string p = std::string(w) + ",algo=";
            auto gt = dnll(p + "gptq,calib=tinystories"), gw = dnll(p + "gptq,calib=wikitext");
            auto at = dnll(p + "awq,calib=tinystories"), aw = dnll(p + "awq,calib=wikitext");
            if (!gt || !gw || !at || !aw) continue;
            ++n;
            sens_g += *gw - *gt;
            sens_a += *aw - *at;
            ev += (ev.empty() ? "" : "; ") + parse_recipe(p + "rtn").weight_text() + ": GPTQ " + d4(*gw - *gt) +
                  ", AWQ " + d4(*aw - *at);
        }
        if (n)
            out.push_back({"GPTQ (reconstruction) is more sensitive to the calibration set than AWQ (scaling)",
                           sens_g > sens_a ? "agrees" : "disagrees",
                           "dNLL(WikiText-2 calib) - dNLL(TinyStories calib): " + ev});
    }
};

// ---------------------------------------------------------------------------------------------
// The measured search: greedy coordinate search over the recipe keys, per bit width, tuned on
// the evaluation text, beside the reference GPTQ's published numbers.
// ---------------------------------------------------------------------------------------------

/// The reference's measured mean NLL on tinystories/valid.txt (fp32 1.2662): the paper authors'
/// GPTQ code (IST-DASLab gptq.py) run on stories260K with ptq's calibration protocol (16,384
/// TinyStories tokens, sequential, damping 1 %, block 128). Hard-coded: this is the published
/// comparison, not a ptq measurement. NaN = not measured.
struct ReferenceRow {
    const char* weight;
    double rtn, gptq, act_order, act_order_static, act_order_mse;
};
constexpr double kNone = std::numeric_limits<double>::quiet_NaN();
constexpr ReferenceRow kReference[] = {
    {"int4-asym:g32", 1.3562, 1.3218, 1.3153, 1.3208, 1.3183},
    {"int3-asym:g32", 1.8361, 1.6285, 1.6083, 1.5919, 1.5541},
    {"int3-asym:pc", 2.2640, 1.8187, 1.7802, kNone, kNone},
    {"int2-asym:g32", 5.8033, 4.6925, 4.3244, 4.5802, kNone},
};
constexpr double kReferenceFp32 = 1.2662;
const char* const kReferenceColumns[] = {"RTN", "GPTQ", "act-order", "act-order + static groups",
                                         "act-order + MSE clipping"};

double reference_value(const ReferenceRow& r, int c) {
    const double v[] = {r.rtn, r.gptq, r.act_order, r.act_order_static, r.act_order_mse};
    return v[c];
}
/// The reference's best NLL of a row and the label of its column.
std::pair<double, const char*> reference_best(const ReferenceRow& r) {
    double best = std::numeric_limits<double>::infinity();
    const char* label = "";
    for (int c = 1; c < 5; ++c)
        if (!std::isnan(reference_value(r, c)) && reference_value(r, c) < best) {
            best = reference_value(r, c);
            label = kReferenceColumns[c];
        }
    return {best, label};
}

/// One bit width of the search: weight format, its preset, and the goal against the reference.
struct SearchTarget {
    const char* preset;
    const char* weight;
    /// Goal: dNLL <= cut * the reference's best dNLL (a 25 % cut: 0.75), or 1.0: any
    /// improvement ("same direction").
    double cut;
};
constexpr SearchTarget kSearchTargets[] = {
    {"w4", "int4-asym:g32", 0.75},
    {"w3", "int3-asym:g32", 0.75},
    {"w2", "int2-asym:g32", 1.0},
    {"w3pc", "int3-asym:pc", 1.0},
};

/// A search axis: a recipe key and its values (the first one is the starting value unless the
/// start recipe sets the key), tried only when `applies` holds for the current recipe.
struct SearchAxis {
    std::string key;
    std::vector<std::string> values;
    std::function<bool(const std::map<std::string, std::string>&)> applies;
};

std::string get(const std::map<std::string, std::string>& m, const std::string& k, const std::string& dflt) {
    auto it = m.find(k);
    return it == m.end() ? dflt : it->second;
}

std::vector<SearchAxis> search_axes(const std::vector<std::string>& extra) {
    using M = std::map<std::string, std::string>;
    const auto always = [](const M&) { return true; };
    const auto clipping = [](const M& m) { return get(m, "clip", "none") != "none"; };
    const auto grouped = [](const M& m) { return get(m, "w", "").find(":pc") == std::string::npos; };
    std::vector<SearchAxis> a = {
        {"algo", {"gptq", "awq+gptq"}, always},
        {"act-order", {"1", "0"}, always},
        {"clip", {"none", "cs-asym"}, always},
        {"static-groups", {"0", "1"}, grouped},
        {"gptaq", {"0", "1"}, always},
        {"refine", {"0", "8"}, always},
        {"damp", {"0.01", "0.003", "0.03", "0.1"}, always},
        {"calib-tokens", {"16384", "32768", "65536"}, always},
        {"clip-norm", {"2", "2.4", "3"}, clipping},
        {"clip-shrink", {"0.5", "0.3", "0.7"}, clipping},
        {"awq-duo", {"0", "1"}, [](const M& m) { return get(m, "algo", "").find("awq") != std::string::npos; }},
        {"gptaq-alpha", {"1", "0.5"}, [](const M& m) { return get(m, "gptaq", "0") == "1"; }},
    };
    // Extra axes "KEY=V1|V2|..." (e.g. another helper's rot=none|hadamard), tried last.
    for (const auto& e : extra) {
        const auto eq = e.find('=');
        if (eq == std::string::npos || eq == 0 || eq + 1 >= e.size())
            throw RecipeError("--search-axis '" + e + "' is not KEY=V1|V2|...");
        SearchAxis x{e.substr(0, eq), {}, always};
        std::stringstream ss(e.substr(eq + 1));
        for (std::string v; std::getline(ss, v, '|');)
            if (!v.empty()) x.values.push_back(v);
        a.push_back(x);
    }
    return a;
}

std::string recipe_of(const std::map<std::string, std::string>& m, const std::vector<std::string>& order) {
    std::string s;
    for (const auto& k : order)
        if (auto it = m.find(k); it != m.end()) s += (s.empty() ? "" : ",") + k + "=" + it->second;
    return s;
}

struct SearchTrial {
    std::string recipe;  // as searched (key=value text)
    const Row* row = nullptr;
    bool improved = false;
};
struct SearchOutcome {
    SearchTarget target;
    std::vector<SearchTrial> trials;
    const Row* best = nullptr;
    std::string best_recipe;
    const Row* baseline = nullptr;  // plain GPTQ of the same format (the reference's bits)
    const Row* preset = nullptr;    // the preset as compiled into the tool
};

/// Greedy coordinate search for one target: from "w=W,algo=gptq,act-order=1,calib-tokens=16384", each axis in
/// turn is set to each of its values (the others held), the best mean NLL kept; passes repeat
/// until one changes nothing or `passes` is reached. Every evaluated recipe is cached by its
/// canonical text, so a recipe is never run twice.
SearchOutcome search_target(Runner& run, const SearchTarget& t, const std::vector<SearchAxis>& axes, int passes,
                            std::size_t& index) {
    SearchOutcome o{t, {}, nullptr, {}, nullptr, nullptr};
    std::vector<std::string> order = {"w"};
    for (const auto& a : axes) order.push_back(a.key);
    // The start: the reference's best single option (act-order) at its calibration budget.
    std::map<std::string, std::string> cur = {
        {"w", t.weight}, {"algo", "gptq"}, {"act-order", "1"}, {"calib-tokens", "16384"}};
    // Keys of axes that do not apply (clip-norm without clipping, ...) are dropped.
    const auto normalize = [&](std::map<std::string, std::string> m) {
        for (const auto& a : axes)
            if (!a.applies(m)) m.erase(a.key);
        return m;
    };
    auto evaluate = [&](const std::map<std::string, std::string>& m) -> const Row* {
        const std::string text = recipe_of(normalize(m), order);
        const RecipeSpec spec = parse_recipe(text);
        const bool fresh = run.find(spec) == nullptr;
        const Row* r = &run.run(spec, ++index, 0);
        if (fresh) o.trials.push_back({text, r, false});
        return r;
    };
    o.best = evaluate(cur);
    o.best_recipe = recipe_of(cur, order);
    if (!o.trials.empty()) o.trials.back().improved = true;
    for (int pass = 0; pass < passes; ++pass) {
        bool changed = false;
        for (const auto& a : axes) {
            if (!a.applies(cur)) continue;
            const std::string start = get(cur, a.key, a.values.front());
            for (const auto& v : a.values) {
                if (v == start) continue;
                auto m = cur;
                m[a.key] = v;
                const Row* r = evaluate(m);
                if (r->nll < o.best->nll - 1e-6) {
                    o.best = r;
                    cur = normalize(m);
                    o.best_recipe = recipe_of(cur, order);
                    changed = true;
                    for (auto it = o.trials.rbegin(); it != o.trials.rend(); ++it)
                        if (it->row == r) {
                            it->improved = true;
                            break;
                        }
                }
            }
        }
        if (!changed) break;
    }
    o.baseline = &run.run(parse_recipe(std::string("w=") + t.weight + ",algo=gptq"), ++index, 0);
    o.preset = &run.run(parse_recipe(std::string("preset=") + t.preset), ++index, 0);
    return o;
}

/// The comparison with the reference and the search log, in Markdown.
void write_search_report(std::ostream& md, const Runner& run, const std::vector<SearchOutcome>& res, int passes) {
    const bool searched = std::any_of(res.begin(), res.end(), [](const SearchOutcome& o) { return !o.trials.empty(); });
    md << "## Best recipes vs the reference GPTQ\n\n"
       << "The reference columns are **the reference's measured numbers**, hard-coded in `tools/ptq/table.cpp`: "
          "the GPTQ paper authors' code (IST-DASLab `gptq.py`) run on this model with 16,384 TinyStories "
          "calibration tokens, sequential, damping 1 %, block 128 (its fp32 NLL "
       << fmt("%.4f", kReferenceFp32) << "). The ptq columns are measured by this run: "
       << (searched ? "the best recipe found by the search below"
                    : "the presets compiled into the tool (the best recipes of `ptq table --search`)")
       << ", tuned on the evaluation text, calibrated on the first 1,800 stories of "
          "`tinystories/train_calib.txt` only. dNLL = NLL - fp32 NLL of this run ("
       << fmt("%.4f", run.fp32_nll)
       << "). Bits per weight count every scale and zero point (fp16 each per group) and any low-rank "
          "factor; the reference has the same format, hence the bits of ptq's plain GPTQ of that format.\n\n"
       << "| weights | reference best | ref NLL | ref dNLL | goal dNLL | ptq best recipe | bits/w (ptq / ref) | "
          "ptq NLL | ptq dNLL | dNLL cut vs ref | verdict |\n"
       << "|---|---|---:|---:|---:|---|---:|---:|---:|---:|---|\n";
    for (const auto& o : res) {
        const ReferenceRow* ref = nullptr;
        for (const auto& r : kReference)
            if (std::string(r.weight) == o.target.weight) ref = &r;
        if (!ref) continue;
        const auto [rb, label] = reference_best(*ref);
        const double rd = rb - kReferenceFp32, goal = o.target.cut * rd, d = o.best->nll - run.fp32_nll;
        const double bits = o.best->rep.effective_bits, ref_bits = o.baseline->rep.effective_bits;
        std::string verdict;
        if (bits > ref_bits + 1e-9)
            verdict = "not at equal bits (" + fmt("%.3f", bits) + " > " + fmt("%.3f", ref_bits) + ")";
        else if (o.target.cut < 1.0)
            verdict = d <= goal ? "**target met** (" + fmt("%.0f", 100.0 * (1.0 - o.target.cut)) + " % cut)"
                                : "**missed by " + fmt("%.4f", d - goal) + "**";
        else verdict = d < rd ? "**better than the reference**" : "**worse by " + fmt("%.4f", d - rd) + "**";
        md << "| " << o.target.weight << " | " << label << " | " << fmt("%.4f", rb) << " | " << fmt("%.4f", rd) << " | "
           << (o.target.cut < 1.0 ? "<= " + fmt("%.4f", goal) : "< " + fmt("%.4f", rd)) << " | `" << o.best->spec.text()
           << "` | " << fmt("%.3f", bits) << " / " << fmt("%.3f", ref_bits) << " | " << fmt("%.4f", o.best->nll)
           << " | " << fmt("%.4f", d) << " | " << fmt("%.1f %%", 100.0 * (1.0 - d / rd)) << " | " << verdict << " |\n";
    }
    if (searched) {
        md << "\nThe presets compiled into the tool (recipe key `preset=NAME`) and whether each is the best recipe "
              "of this run:\n\n| preset | recipe | NLL | dNLL | the search's best |\n|---|---|---:|---:|---|\n";
        for (const auto& o : res)
            md << "| `" << o.target.preset << "` | `" << o.preset->spec.text() << "` | " << fmt("%.4f", o.preset->nll)
               << " | " << fmt("%.4f", o.preset->nll - run.fp32_nll) << " | "
               << (o.preset->key == o.best->key ? "yes" : "no (update `kPresets` in tools/ptq/recipe.cpp)") << " |\n";
    } else {
        md << "\nThe ptq recipes are the presets (`ptq quantize --recipe preset=NAME`): ";
        for (const auto& o : res) md << "`" << o.target.preset << "` = " << o.target.weight << "; ";
        md << "`ptq table --search` reruns the search that chose them.\n";
    }
    md << "\n### The reference's full table (its measured mean NLL, not ptq's)\n\n| weights |";
    for (const char* c : kReferenceColumns) md << " reference " << c << " |";
    md << "\n|---|---:|---:|---:|---:|---:|\n";
    for (const auto& r : kReference) {
        md << "| " << r.weight << " |";
        for (int c = 0; c < 5; ++c)
            md << " " << (std::isnan(reference_value(r, c)) ? std::string("-") : fmt("%.4f", reference_value(r, c)))
               << " |";
        md << "\n";
    }
    if (!searched) return;
    md << "\n## The search\n\n"
       << "Greedy coordinate search per weight format (`ptq table --search`): start from "
          "`algo=gptq,act-order=1,calib-tokens=16384`; for each key in turn (algo, act-order, clip, static-groups, "
          "gptaq, refine, "
          "damp, calib-tokens, clip-norm, clip-shrink, awq-duo, gptaq-alpha, then any "
          "`--search-axis`), try each of its values with the others held and keep the lowest mean NLL; at most "
       << passes
       << " passes, stopping after a pass without change. Every recipe evaluated, in order (`*`: it became the "
          "best so far):\n\n";
    for (const auto& o : res) {
        md << "### " << o.target.weight << " (" << o.trials.size() << " recipes)\n\n"
           << "| | recipe | bits/w | mean NLL | dNLL | quant s |\n|---|---|---:|---:|---:|---:|\n";
        for (const auto& t : o.trials)
            md << "| " << (t.improved ? "*" : "") << " | `" << t.recipe << "` | "
               << fmt("%.3f", t.row->rep.effective_bits) << " | " << fmt("%.4f", t.row->nll) << " | "
               << fmt("%+.4f", t.row->nll - run.fp32_nll) << " | " << fmt("%.2f", t.row->rep.seconds) << " |\n";
        md << "\n";
    }
}

// ---------------------------------------------------------------------------------------------

}  // namespace

namespace ptq::llama {

void list_recipe_sets() {
    std::printf("weight formats: ");
    for (auto& f : supported_weight_formats()) std::printf("%s ", f.c_str());
    std::printf("\n  granularity (non-MX): pc | per-channel | gN   (MX: :b16 / :b32 as in the format name)\n");
    std::printf("activation formats: ");
    for (auto& f : supported_activation_formats()) std::printf("%s ", f.c_str());
    std::printf("\nalgorithms: rtn gptq sq awq sq+gptq awq+gptq, optionally +lqerK +l2qerK +lorcK\n\nsets:\n");
    for (auto& s : recipe_sets()) {
        std::printf("  %-8s %s (%zu recipes)\n", s.name.c_str(), s.title.c_str(), s.recipes.size());
    }
}

int run_table(const TableArgs& args) {
    fs::path data = args.data, model_file = args.model, tok_file = args.tokenizer, eval_file = args.eval,
             report_file = args.report;
    std::vector<std::string> recipe_texts, set_names = args.sets;
    for (const auto& r : args.recipes) {
        std::stringstream ss(r);
        for (std::string t; std::getline(ss, t, ';');)
            if (!t.empty()) recipe_texts.push_back(t);
    }
    const std::string default_calib = args.calib;
    const std::size_t calib_tokens = args.calib_tokens;
    const bool sequential = args.sequential;
    const Style style = args.csv ? Style::csv : args.markdown ? Style::markdown : Style::text;
    if (model_file.empty()) model_file = data / "stories260K" / "stories260K.bin";
    if (tok_file.empty()) tok_file = data / "stories260K" / "tok512.bin";
    if (eval_file.empty()) eval_file = data / "tinystories" / "valid.txt";

    // Resolve the sets and recipes (parse errors before any work).
    const auto all_sets = recipe_sets();
    struct Group {
        std::string title, description;
        std::vector<RecipeSpec> specs;
        std::string set;
    };
    std::vector<Group> groups;
    auto parse = [&](const std::string& t) {
        RecipeSpec s = parse_recipe(t);
        if (t.find("calib=") == std::string::npos) s.calib = default_calib;
        return s;
    };
    try {
        if (recipe_texts.empty() && set_names.empty() && !args.search && !args.compare) set_names.push_back("default");
        for (const auto& n : args.search_targets)
            if (std::none_of(std::begin(kSearchTargets), std::end(kSearchTargets),
                             [&](const SearchTarget& t) { return n == t.preset; })) {
                std::cerr << "unknown search target '" << n << "'; targets: w4, w3, w2, w3pc\n";
                return 2;
            }
        for (const auto& n : set_names) {
            bool found = false;
            for (const auto& s : all_sets)
                if (n == "all" ? s.name != "default" : s.name == n) {
                    Group g{s.title, s.description, {}, s.name};
                    for (const auto& t : s.recipes) g.specs.push_back(parse(t));
                    groups.push_back(g);
                    found = true;
                }
            if (!found) {
                std::cerr << "unknown recipe set '" << n << "'; sets: default, bits, mx, lqer, calib, all\n";
                return 2;
            }
        }
        if (!recipe_texts.empty()) {
            Group g{"Recipes from the command line", "", {}, "cli"};
            for (const auto& t : recipe_texts) g.specs.push_back(parse(t));
            groups.push_back(g);
        }
    } catch (const RecipeError& e) {
        std::cerr << "ptq table: " << e.what() << "\n";
        return 2;
    }

    try {
        const auto t_start = clock_type::now();
        const Model fp32 = load_checkpoint(model_file);
        const auto& c = fp32.config;
        const auto tok = Llama2cTokenizer::load(tok_file, c.vocab_size);
        const auto docs = encode_stories(tok, split_stories(read_text_file(eval_file)), c.seq_len);
        std::size_t predicted = 0;
        for (const auto& d : docs) predicted += d.size() > 0 ? d.size() - 1 : 0;
        std::fprintf(stderr,
                     "model %s: dim %d, hidden %d, layers %d, heads %d/%d kv, vocab %d%s, seq_len %d\n"
                     "eval  %s: %zu stories, %zu predicted tokens\n",
                     model_file.string().c_str(), c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads,
                     c.vocab_size, c.shared_classifier ? " (shared classifier)" : " (separate classifier)", c.seq_len,
                     eval_file.string().c_str(), docs.size(), predicted);

        Runner run{fp32, tok, docs, data, calib_tokens, sequential, {}, {}, 0, 0};
        run.run_fp32();
        std::fprintf(stderr, "fp32: mean NLL %.4f, evaluation of %zu tokens in %.2f s\n", run.fp32_nll, predicted,
                     run.fp32_eval_s);

        // Every recipe, plus the RTN baseline of each (for the "% of RTN" column), once.
        std::size_t total = 0;
        for (auto& g : groups) total += g.specs.size();
        std::size_t idx = 0;
        std::vector<double> group_seconds;
        for (auto& g : groups) {
            const auto tg = clock_type::now();
            for (const auto& s : g.specs) {
                run.run(s, ++idx, total);
                if (!run.find(s.rtn_baseline())) run.run(s.rtn_baseline(), idx, total);
            }
            group_seconds.push_back(since(tg));
        }

        std::vector<SearchOutcome> searched;
        if (args.search || args.compare) {
            const auto axes = search_axes(args.search_axes);
            std::size_t sidx = 0;
            for (const auto& t : kSearchTargets) {
                if (!args.search_targets.empty() && std::find(args.search_targets.begin(), args.search_targets.end(),
                                                              t.preset) == args.search_targets.end())
                    continue;
                if (args.search) {
                    searched.push_back(search_target(run, t, axes, args.search_passes, sidx));
                } else {  // --compare: the compiled preset is the best recipe
                    SearchOutcome o{t, {}, nullptr, std::string("preset=") + t.preset, nullptr, nullptr};
                    o.preset = o.best = &run.run(parse_recipe(o.best_recipe), ++sidx, 0);
                    o.baseline = &run.run(parse_recipe(std::string("w=") + t.weight + ",algo=gptq"), ++sidx, 0);
                    searched.push_back(o);
                }
                const auto& o = searched.back();
                std::printf("search %s (%s): best %s  mean NLL %.4f (dNLL %+.4f), %.3f bits/w, %zu recipes\n", t.weight,
                            t.preset, o.best->spec.text().c_str(), o.best->nll, o.best->nll - run.fp32_nll,
                            o.best->rep.effective_bits, o.trials.size());
                std::fflush(stdout);
            }
        }

        // Tables on stdout.
        for (std::size_t gi = 0; gi < groups.size(); ++gi) {
            const auto& g = groups[gi];
            std::vector<const Row*> rows{&run.done.at("fp32")};
            for (const auto& s : g.specs) rows.push_back(run.find(s));
            if (style == Style::text) std::cout << "== " << g.title << "\n";
            if (style == Style::markdown) std::cout << "### " << g.title << "\n\n";
            print_table(std::cout, rows, run, style);
            if (style != Style::csv) std::cout << "\n";
        }
        const double total_s = since(t_start);
        std::fprintf(stderr, "total wall time %.1f s\n", total_s);

        if (!report_file.empty()) {
            std::ofstream md(report_file);
            if (!md) throw std::runtime_error("cannot write " + report_file.string());
            md << "## Setup\n\n"
               << "- model: `" << model_file.filename().string() << "` (dim " << c.dim << ", hidden " << c.hidden_dim
               << ", " << c.n_layers << " layers, " << c.n_heads << " heads / " << c.n_kv_heads << " KV heads, vocab "
               << c.vocab_size << ")\n"
               << "- evaluation: `" << eval_file.filename().string() << "`, " << docs.size() << " stories, "
               << predicted << " predicted tokens, protocol of docs/DESIGN.md §16\n"
               << "- calibration: " << calib_tokens << "-token budget per set, "
               << (sequential ? "sequential protocol (layer l, and inside it q/k/v -> wo -> w1/w3 -> w2, calibrated on "
                                "the outputs of the already quantized parts)"
                              : "non-sequential protocol (all layers calibrated on the fp32 model)")
               << "\n";
            for (const auto& [name, cd] : run.calib)
                md << "  - `" << name << "`: " << cd.seqs.size() << " sequences, " << cd.tokens << " tokens\n";
            md << "- effective bits per weight: over the seven linears of all layers, weighted by size, counting an "
                  "fp16 scale and an fp16 zero point per group (the papers' convention), MX formats an 8-bit shared "
                  "exponent per block, and low-rank factors (MXINT8 block 16 for LQER/L2QER, fp16 for LoRC). The "
                  "token embedding and the classifier stay fp32 and are excluded.\n"
               << "- `% of RTN dNLL`: the recipe's dNLL as a percentage of the dNLL of RTN with the same weight "
                  "format, granularity and activation format (100 = no better than RTN).\n"
               << "- SmoothQuant/AWQ scales s are applied explicitly by the harness, y = A(x/s) Q(W s)^T (A the "
                  "activation quantizer). This is mathematically identical to folding 1/s into the preceding RMSNorm "
                  "weight (ptq::fold_into_rmsnorm, what a deployment would do) and is also exact for wo, w2 and the "
                  "GQA-shared k/v input, where folding is not possible or not exact.\n"
               << "- GPTQ: damping 1%, block 128, no act-order; AWQ: 20-point alpha grid + per-group clipping search; "
                  "SmoothQuant alpha 0.5.\n\n"
               << "## Timings\n\n"
               << "- fp32 evaluation of the " << predicted << " tokens: " << fmt("%.2f", run.fp32_eval_s)
               << " s (single thread)\n";
            for (std::size_t gi = 0; gi < groups.size(); ++gi)
                md << "- set `" << groups[gi].set << "` (" << groups[gi].specs.size()
                   << " recipes + RTN baselines): " << fmt("%.1f", group_seconds[gi]) << " s\n";
            {
                double cs = 0, qs = 0;
                int n = 0;
                for (const auto& [k, r] : run.done)
                    if (!r.fp32 && r.spec.reconstruct == ReconstructKind::gptq &&
                        r.spec.transform == TransformKind::none && r.spec.low_rank == LowRankKind::none &&
                        r.spec.act == "none") {
                        cs += r.rep.calib_seconds;
                        qs += r.rep.seconds;
                        ++n;
                    }
                if (n)
                    md << "- sequential calibration capture per GPTQ recipe (mean over " << n
                       << "): " << fmt("%.2f", cs / n) << " s of " << fmt("%.2f", qs / n) << " s quantization time\n";
            }
            md << "- total: " << fmt("%.1f", total_s) << " s\n\n";
            if (!searched.empty()) write_search_report(md, run, searched, args.search_passes);
            Findings f{run, {}};
            for (std::size_t gi = 0; gi < groups.size(); ++gi) {
                const auto& g = groups[gi];
                md << "## " << g.title << "\n\n";
                if (!g.description.empty()) md << g.description << "\n\n";
                std::vector<const Row*> rows{&run.done.at("fp32")};
                for (const auto& s : g.specs) rows.push_back(run.find(s));
                print_table(md, rows, run, Style::markdown);
                f.out.clear();
                if (g.set == "bits") f.bits_set();
                if (g.set == "mx") f.mx_set();
                if (g.set == "lqer") f.lqer_set();
                if (g.set == "calib") f.calib_set();
                if (!f.out.empty()) {
                    md << "\n**Findings** (verdicts computed from the numbers above):\n\n";
                    for (const auto& x : f.out)
                        md << "- " << x.claim << ": **" << x.verdict << "**. " << x.evidence << "\n";
                }
                md << "\n";
            }
            std::fprintf(stderr, "report written to %s\n", report_file.string().c_str());
        }
    } catch (const std::exception& e) {
        std::cerr << "ptq table: error: " << e.what() << "\n";
        return 1;
    }
    return 0;
}

}  // namespace ptq::llama
