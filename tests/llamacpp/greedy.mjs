// Greedy continuation with stock llama.cpp (the prebuilt binaries shipped in
// the node-llama-cpp package), for comparison with tc's own decoder.
//
//   node greedy.mjs NODE_MODULES N_TOKENS PROMPT_IDS MODEL.gguf...
//
// PROMPT_IDS is a comma-separated list of token ids.  Prints one line per
// model: "ok ID ID ..." (N_TOKENS generated ids), or "error MESSAGE".
import path from "node:path";
import {pathToFileURL} from "node:url";

const [nodeModules, nTokensArg, promptArg, ...models] = process.argv.slice(2);
const entry = path.join(nodeModules, "node-llama-cpp", "dist", "index.js");
const {getLlama, LlamaLogLevel} = await import(pathToFileURL(entry).href);

const nTokens = Number(nTokensArg);
const prompt = promptArg.split(",").map(Number);
// The CPU build only; no download or compilation may happen here.
const llama = await getLlama({gpu: false, build: "never", logLevel: LlamaLogLevel.error});
for (const modelPath of models) {
    try {
        const model = await llama.loadModel({modelPath});
        // One thread: a tiny model's step is dominated by thread wake-ups otherwise.
        const context = await model.createContext({contextSize: 256, sequences: 1, threads: 1, batchSize: 64});
        const sequence = context.getSequence();
        const out = [];
        for await (const token of sequence.evaluate(prompt, {temperature: 0})) {
            out.push(token);
            if (out.length >= nTokens)
                break;
        }
        console.log("ok " + out.join(" "));
        await context.dispose();
        await model.dispose();
    } catch (e) {
        console.log("error " + String(e && e.message ? e.message : e).replace(/\s+/g, " "));
    }
}
await llama.dispose();
