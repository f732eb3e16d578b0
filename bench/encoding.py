"""Encoding: what a truncation length, a precision or another runtime costs and changes.

    .venv/bin/python bench/encoding.py [--pairs 2312]

On HH-RLHF harmless (where the length of an answer is no shortcut), every encoder
setting embeds the same prompt + completion texts; each is reported beside the default
(torch, bf16 where the CPU has it, 256 tokens) measured in the same run: texts/s, cosine
to the default's vectors, the overlap of the ISA 5% subset with the default's, and the
quality yardstick (a linear probe, 5 prompt-grouped folds: the full pool and the ISA 5%
subset). OpenVINO runs when the ``openvino`` package is installed (``pip install
openvino``; not a dependency: it has to win first). On a CUDA machine the GPU settings
(fp16, large length-sorted batches) run too: that part is ``bench/gpu.py``'s.
Writes bench/results/encoding.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from data_dir import add_data_dir, data_file  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
OUT = ROOT / "bench" / "results"


class OpenVINOEncoder:
    """MiniLM converted to OpenVINO from the same PyTorch weights; mean pooling and L2
    normalisation as the sentence-transformers model does them."""

    def __init__(self, *, max_seq_length: int = 256, precision: str = "bf16",
                 batch_size: int = 16) -> None:
        import openvino as ov
        import torch

        from isa import SentenceTransformerEncoder

        st = SentenceTransformerEncoder(precision="float32", max_seq_length=max_seq_length)
        self.tok, self.max_len, self.batch = st.model.tokenizer, max_seq_length, batch_size
        hf = st.model[0].auto_model.eval()
        example = self.tok(["an example"], return_tensors="pt")
        with torch.no_grad():
            model = ov.convert_model(hf, example_input=dict(example))
        self.inputs = list(example.keys())
        self.compiled = ov.Core().compile_model(model, "CPU",
                                                {"INFERENCE_PRECISION_HINT": precision})
        self.name = f"openvino:{precision}:len{max_seq_length}"
        self.dim = st.dim

    def encode(self, texts: list[str]) -> np.ndarray:
        from isa.embed.base import l2_normalize

        out = np.empty((len(texts), self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
        for start in range(0, len(order), self.batch):
            idx = order[start:start + self.batch]
            enc = self.tok([texts[i] for i in idx], padding=True, truncation=True,
                           max_length=self.max_len, return_tensors="np")
            hidden = self.compiled({k: enc[k] for k in self.inputs})[0]
            mask = enc["attention_mask"][..., None].astype(np.float32)
            out[idx] = (hidden * mask).sum(1) / np.maximum(mask.sum(1), 1e-9)
        return l2_normalize(out)


def _configs(with_gpu: bool) -> list[tuple[str, dict]]:
    configs = [("torch default (auto precision, 256)", {}),
               ("torch, 128 tokens", {"max_seq_length": 128}),
               ("torch, 64 tokens", {"max_seq_length": 64}),
               ("torch float32, 256", {"precision": "float32"})]
    if with_gpu:
        configs += [("cuda fp16, 256, batch 256", {"device": "cuda", "precision": "float16",
                                                    "batch_size": 256}),
                    ("cuda fp16, 128, batch 512", {"device": "cuda", "precision": "float16",
                                                    "batch_size": 512, "max_seq_length": 128})]
    return configs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_data_dir(ap)
    ap.add_argument("--pairs", type=int, default=0, help="0: the whole file")
    args = ap.parse_args()

    import torch

    from isa import Budget, PreferenceFile, SentenceTransformerEncoder
    from isa.evaluate.runner import PairSet, probe_score, ranking_for
    from isa.evaluate.split import kfold_by_prompt
    from isa.pipeline import read_units

    source = PreferenceFile(data_file(args.data_dir, "hh_rlhf_harmless_base_test.jsonl.gz"))
    table, _ = read_units(source, level="pair", template="prompt_completion")
    if args.pairs:
        table = PairSet(table, np.zeros((len(table.texts), 1)), np.zeros((len(table), 1))
                        ).subset(np.arange(args.pairs)).table
    texts = table.texts
    labels = np.asarray(table.text_labels)
    folds = kfold_by_prompt(table.prompt_keys, k=5, seed=0)
    budget = Budget(fraction=0.05)

    def pairset(X: np.ndarray) -> PairSet:
        chosen = np.empty((len(table), X.shape[1]), dtype=np.float32)
        rejected = np.empty_like(chosen)
        chosen[table.groups[labels == "chosen"]] = X[labels == "chosen"]
        rejected[table.groups[labels == "rejected"]] = X[labels == "rejected"]
        return PairSet(table, X, chosen - rejected)

    def quality(X: np.ndarray) -> tuple[float, float, set[int]]:
        pairs = pairset(X)
        full, isa = [], []
        for f in range(5):
            train_idx = np.setdiff1d(np.arange(len(table)), folds[f])
            train, test = pairs.subset(train_idx), pairs.subset(folds[f])
            k = budget.size(len(train.table))
            full.append(probe_score(train, np.arange(len(train.table)), test).accuracy)
            isa.append(probe_score(train, ranking_for(train, "isa", {}, 0, k)[:k],
                                   test).accuracy)
        whole = ranking_for(pairs, "isa", {}, 0, budget.size(len(table)))
        return float(np.mean(full)), float(np.mean(isa)), set(
            whole[:budget.size(len(table))].tolist())

    rows, ref = [], None
    encoders: list[tuple[str, object]] = [
        (label, lambda kw=kw: SentenceTransformerEncoder(**kw))
        for label, kw in _configs(torch.cuda.is_available())]
    try:
        import openvino  # noqa: F401

        encoders += [("openvino bf16, 256", lambda: OpenVINOEncoder(precision="bf16")),
                     ("openvino f32, 256", lambda: OpenVINOEncoder(precision="f32"))]
    except ImportError:
        print("openvino is not installed: its rows are skipped")
    print(f"== {len(texts):,} texts of {len(table):,} HH pairs; torch threads "
          f"{torch.get_num_threads()}", flush=True)
    for label, make in encoders:
        enc = make()
        enc.encode(texts[:32])  # warm up
        t = time.perf_counter()
        X = enc.encode(texts)
        seconds = time.perf_counter() - t
        full, isa, subset = quality(X)
        row = {"label": label, "name": enc.name, "texts_s": len(texts) / seconds,
               "full": full, "isa": isa}
        if ref is None:
            ref = (X, subset)
        cos = (X * ref[0]).sum(1)
        row |= {"cos_min": float(cos.min()), "cos_mean": float(cos.mean()),
                "overlap": len(subset & ref[1]) / len(ref[1])}
        print(row, flush=True)
        rows.append(row)
    base = rows[0]["texts_s"]
    lines = [
        "# Encoding settings: speed against what they change (bench/encoding.py)",
        "",
        f"{len(texts):,} prompt + completion texts of {len(table):,} HH-RLHF harmless pairs; "
        f"torch threads {torch.get_num_threads()}. Beside the first row, measured in the same "
        "run: cosine to its vectors, overlap of the ISA 5% subset, and the probe's "
        "accuracy (5 prompt-grouped folds; full pool and ISA 5%).",
        "",
        "| setting | encoder name | texts/s | × default | cosine min / mean | ISA 5% overlap "
        "| probe, full pool | probe, ISA 5% |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['label']} | `{r['name']}` | {r['texts_s']:.0f} | "
                     f"{r['texts_s'] / base:.2f} | {r['cos_min']:.4f} / {r['cos_mean']:.5f} | "
                     f"{r['overlap']:.1%} | {r['full']:.3f} | {r['isa']:.3f} |")
    lines += ["", "Regenerate: `.venv/bin/python bench/encoding.py`"]
    text = "\n".join(lines) + "\n"
    print(text)
    (OUT / "encoding.md").write_text(text)


if __name__ == "__main__":
    main()
