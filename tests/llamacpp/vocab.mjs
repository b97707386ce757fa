// Tokenization and greedy continuation by stock llama.cpp (the prebuilt
// binaries of node-llama-cpp), to check the vocabularies tc writes.
//
//   node vocab.mjs NODE_MODULES N_TOKENS (MODEL.gguf CASES SPECIALS PROMPT_IDS)...
//
// CASES and SPECIALS are files of test strings, each followed by
// "\n__ggml_vocab_test__\n" (llama.cpp's tokenizer test format), or "-".
// For each model, one line per CASES string: "case" and the ids llama.cpp
// gives it (no BOS, special-token text not parsed); two per SPECIALS string:
// "plain" and the ids so, "special" and the ids with special-token text
// parsed; then "ok" and the N_TOKENS ids generated greedily after PROMPT_IDS
// (comma separated).  A model llama.cpp refuses gives "error MESSAGE" instead
// of all its lines.  One process runs every model: starting llama.cpp costs
// more than a small model.
import fs from "node:fs";
import path from "node:path";
import {pathToFileURL} from "node:url";

const [nodeModules, nTokensArg, ...jobs] = process.argv.slice(2);
const entry = path.join(nodeModules, "node-llama-cpp", "dist", "index.js");
const {getLlama, LlamaLogLevel} = await import(pathToFileURL(entry).href);

function readCases(file) {
    if (file === "-")
        return [];
    const sep = Buffer.from("\n__ggml_vocab_test__\n");
    const raw = fs.readFileSync(file);
    const cases = [];
    for (let at = 0; at < raw.length;) {
        const end = raw.indexOf(sep, at);
        if (end < 0)
            break;
        cases.push(raw.subarray(at, end).toString("utf8"));
        at = end + sep.length;
    }
    return cases;
}

const ids = (tokens) => tokens.map((t) => " " + t).join("");
const nTokens = Number(nTokensArg);
const llama = await getLlama({gpu: false, build: "never", logLevel: LlamaLogLevel.error});
for (let j = 0; j + 3 < jobs.length; j += 4) {
    const [modelPath, casesPath, specialsPath, promptArg] = jobs.slice(j, j + 4);
    const lines = [];
    try {
        const model = await llama.loadModel({modelPath});
        for (const text of readCases(casesPath))
            lines.push("case" + ids(model.tokenize(text, false)));
        for (const text of readCases(specialsPath)) {
            lines.push("plain" + ids(model.tokenize(text, false)));
            lines.push("special" + ids(model.tokenize(text, true)));
        }
        // One thread: a tiny model's step is dominated by thread wake-ups otherwise.
        const context = await model.createContext({contextSize: 256, sequences: 1, threads: 1, batchSize: 64});
        const sequence = context.getSequence();
        const out = [];
        for await (const token of sequence.evaluate(promptArg.split(",").map(Number), {temperature: 0})) {
            out.push(token);
            if (out.length >= nTokens)
                break;
        }
        lines.push("ok " + out.join(" "));
        await context.dispose();
        await model.dispose();
    } catch (e) {
        lines.length = 0;
        lines.push("error " + String(e && e.message ? e.message : e).replace(/\s+/g, " "));
    }
    console.log(lines.join("\n"));
}
await llama.dispose();
