"""mc_predict on real models' outputs (tuples, dicts, Hugging Face ModelOutput) and the input
checks of the metrics and tools: bad input is named, never a silent number."""

from __future__ import annotations

import pytest
import torch

import droplab
from droplab import mc


class TupleNet(torch.nn.Module):
    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind
        self.body = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.5),
                                        torch.nn.Linear(8, 3))  # fmt: skip

    def forward(self, x):
        z = self.body(x)
        return {"logits": z, "h": x} if self.kind == "dict" else (z, x)


@pytest.mark.parametrize("kind", ["dict", "tuple"])
def test_mc_predict_picks_the_logits_of_dicts_and_tuples(kind):
    net, x = TupleNet(kind), torch.randn(6, 4)
    got = droplab.mc_predict(net, x, samples=8, seed=0)
    ref = droplab.mc_predict(net.body, x, samples=8, seed=0)
    torch.testing.assert_close(got.mean, ref.mean)
    picked = droplab.mc_predict(
        net, x, samples=8, seed=0, output=lambda out: out[0] if kind == "tuple" else out["logits"]
    )
    torch.testing.assert_close(picked.mean, ref.mean)


def test_mc_predict_names_a_missing_output_key():
    with pytest.raises(ValueError, match="output='scores': the model returned a dict without it"):
        droplab.mc_predict(TupleNet("dict"), torch.randn(2, 4), samples=2, output="scores")
    with pytest.raises(TypeError, match="output must be None, a key, an index or a function"):
        droplab.mc_predict(TupleNet("dict"), torch.randn(2, 4), samples=2, output=1.5)


def test_mc_predict_on_hugging_face_bert_for_sequence_classification():
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=64, num_labels=3)  # fmt: skip
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(config).eval()
    ids = torch.randint(0, 50, (4, 10))
    out = droplab.mc_predict(model, ids, samples=4, seed=0)
    assert out.mean.shape == (4, 3)
    torch.testing.assert_close(out.mean.sum(1), torch.ones(4), atol=1e-5, rtol=0)
    assert float(out.variance.sum()) > 0  # the passes differ: dropout was on
    assert not model.training  # modes restored


@pytest.mark.parametrize("seed", [-1, 2**64])
def test_mc_predict_seed_range(seed):
    with pytest.raises(ValueError, match=r"seed must be an int in \[0, 2\*\*64 - 1\]"):
        droplab.mc_predict(TupleNet("dict"), torch.randn(2, 4), samples=2, seed=seed)


def test_mc_predict_model_must_be_a_module():
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got str"):
        droplab.mc_predict("m", torch.randn(2, 4), samples=2)


@pytest.mark.parametrize("metric", [mc.accuracy, mc.nll, mc.brier, mc.ece])
def test_metrics_refuse_logits_rows_not_summing_to_one_and_bad_labels(metric):
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.1, 3.0, -2.0]])
    labels = torch.tensor([0, 1])
    with pytest.raises(ValueError, match=r"probs must be probabilities in \[0, 1\].*not logits"):
        metric(logits, labels)
    with pytest.raises(ValueError, match="each row of probs must sum to 1, a row sums to 0.5"):
        metric(torch.tensor([[0.25, 0.25, 0.0], [0.2, 0.3, 0.5]]), labels)
    with pytest.raises(
        ValueError, match=r"labels must be in \[0, 2\] for 3 classes, got values in \[0, 3\]"
    ):
        metric(logits.softmax(1), torch.tensor([0, 3]))
    assert 0 <= metric(logits.softmax(1), labels) < 10


def test_tools_refuse_what_is_not_a_module():
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got str 'm'"):
        droplab.replace_dropout("m")
    with pytest.raises(TypeError, match="module must be a torch.nn.Module, got int 42"):
        droplab.check_scaling(42)
