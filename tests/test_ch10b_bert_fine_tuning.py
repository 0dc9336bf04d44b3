"""Chapter 10b's code, imported from the notebook, against helpers.bert, PyTorch and scipy."""

import html
import math
from functools import partial

import ipywidgets as w
import matplotlib.pyplot as plt
import pytest
import torch
from torch import nn

from helpers import bert, classification, text, widgets
from notebook_code import load_notebook

ch = load_notebook("10b_bert_fine_tuning")

WORDS = "a man woman dog plays sleeps guitar in the park is not free call now prize".split()
VOCAB = text.Vocab(WORDS, reserved_tokens=text.BERT_RESERVED_TOKENS)
CONFIG = dict(vocab_size=len(VOCAB), num_hiddens=16, ffn_num_hiddens=32, num_heads=2, num_layers=2,
              dropout=0.0, max_len=16)


def small_bert(seed=0, **changes):
    torch.manual_seed(seed)
    return bert.BERTModel(**{**CONFIG, **changes}).eval()


def random_pairs(n, seed=0, max_len=16):
    """BERT inputs of n random pairs: tokens (n, max_len) padded, segments 0/1, valid lengths."""
    gen = torch.Generator().manual_seed(seed)
    examples = []
    for _ in range(n):
        len_a, len_b = torch.randint(1, 6, (2,), generator=gen).tolist()
        a = [WORDS[i] for i in torch.randint(len(WORDS), (len_a,), generator=gen).tolist()]
        b = [WORDS[i] for i in torch.randint(len(WORDS), (len_b,), generator=gen).tolist()]
        examples.append((a, b))
    tokens, segments, valid_lens = text.bert_input_tensors([a for a, _ in examples], [b for _, b in examples],
                                                           VOCAB, max_len)
    return tokens, segments, valid_lens


# --- the classifier ---------------------------------------------------------------------------


@pytest.mark.parametrize("num_classes", [2, 3])
def test_classifier_equals_the_helper_with_the_same_weights(num_classes):
    model = small_bert()
    torch.manual_seed(1)
    ours = ch.BERTClassifier.from_pretrained(model, num_classes).eval()
    theirs = bert.BERTClassifier.from_pretrained(model, num_classes).eval()
    assert sorted(ours.state_dict()) == sorted(theirs.state_dict())
    theirs.load_state_dict(ours.state_dict())
    tokens, segments, valid_lens = random_pairs(12)
    with torch.no_grad():
        out = ours(tokens, segments, valid_lens)
        assert out.shape == (12, num_classes)
        assert torch.allclose(out, theirs(tokens, segments, valid_lens), atol=1e-6)
        assert torch.allclose(ours(tokens, segments), theirs(tokens, segments), atol=1e-6)  # no valid_lens


def test_classifier_reads_the_pooled_cls_vector():
    model = small_bert()
    clf = ch.BERTClassifier.from_pretrained(model, 3).eval()
    tokens, segments, valid_lens = random_pairs(5)
    with torch.no_grad():
        encoded, _, _ = model(tokens, segments, valid_lens)
        expected = clf.output(torch.tanh(model.pooler[0](encoded[:, 0])))
        assert torch.allclose(clf(tokens, segments, valid_lens), expected, atol=1e-6)


def test_padding_does_not_change_the_logits():
    clf = ch.BERTClassifier.from_pretrained(small_bert(), 3).eval()
    tokens, segments, valid_lens = random_pairs(6)
    changed = tokens.clone()
    for i, n in enumerate(valid_lens.tolist()):
        changed[i, n:] = VOCAB["dog"]  # garbage where the padding was
    with torch.no_grad():
        before = clf(tokens, segments, valid_lens)
        assert torch.allclose(before, clf(changed, segments, valid_lens), atol=1e-5)


def test_from_pretrained_copies_and_leaves_the_model_unchanged():
    model = small_bert()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    clf = ch.BERTClassifier.from_pretrained(model, 3)
    assert clf.encoder is not model.encoder and clf.pooler is not model.pooler
    tokens, segments, valid_lens = random_pairs(8)
    optimizer = torch.optim.SGD(clf.parameters(), lr=1.0)
    loss = nn.functional.cross_entropy(clf(tokens, segments, valid_lens), torch.zeros(8, dtype=torch.long))
    loss.backward()
    assert all(p.grad is not None for p in clf.parameters()), "fine-tuning trains every parameter"
    optimizer.step()
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert not torch.equal(clf.encoder.token_embedding.weight, model.encoder.token_embedding.weight)


def test_output_layer_is_initialised_as_bert_and_depends_on_the_seed():
    model = small_bert()
    torch.manual_seed(0)
    a = ch.BERTClassifier.from_pretrained(model, 3)
    torch.manual_seed(1)
    b = ch.BERTClassifier.from_pretrained(model, 3)
    assert torch.equal(a.output.bias, torch.zeros_like(a.output.bias))  # BERT initialises biases at 0
    assert not torch.equal(a.output.weight, b.output.weight)
    torch.manual_seed(0)
    wide = ch.BERTClassifier(small_bert(num_hiddens=256, ffn_num_hiddens=64).encoder, nn.Identity(), 200)
    assert abs(wide.output.weight.std().item() - 0.02) < 0.002


def test_from_scratch_has_the_architecture_but_fresh_weights():
    model = small_bert()
    torch.manual_seed(5)
    fresh = ch.BERTClassifier.from_scratch(model.config, 3)
    pre = ch.BERTClassifier.from_pretrained(model, 3)
    shapes = {k: v.shape for k, v in pre.state_dict().items()}
    assert {k: v.shape for k, v in fresh.state_dict().items()} == shapes
    assert not torch.equal(fresh.encoder.token_embedding.weight, model.encoder.token_embedding.weight)
    assert fresh.dropout.p == model.config["dropout"]


def test_count_parameters_counts_a_tied_weight_once():
    model = small_bert()
    expected = len({id(p) for p in model.parameters()})
    assert expected == len(list(model.parameters()))
    assert ch.count_parameters(model) == sum(p.numel() for p in model.parameters())
    untied = small_bert(tie_weights=False)
    assert ch.count_parameters(untied) - ch.count_parameters(model) == len(VOCAB) * 16
    assert ch.count_parameters(ch.BERTClassifier.from_pretrained(model, 3).output) == 16 * 3 + 3


# --- the bag of words -----------------------------------------------------------------------------


@pytest.mark.parametrize("with_lens", [True, False])
def test_bag_of_words_equals_the_helper(with_lens):
    torch.manual_seed(0)
    ours = ch.BagOfWords(len(VOCAB), 3, ignore=bert.special_ids(VOCAB))
    with torch.no_grad():
        for p in ours.parameters():
            p.normal_()
    theirs = bert.BagOfWords(len(VOCAB), 3, ignore=bert.special_ids(VOCAB))
    theirs.load_state_dict(ours.state_dict())
    tokens, segments, valid_lens = random_pairs(20, seed=3)
    lens = valid_lens if with_lens else None
    with torch.no_grad():
        assert torch.allclose(ours(tokens, segments, lens), theirs(tokens, segments, lens), atol=1e-5)


def test_bag_of_words_is_logistic_regression_on_counts():
    torch.manual_seed(0)
    model = ch.BagOfWords(len(VOCAB), 2, ignore=bert.special_ids(VOCAB))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
    tokens, segments, valid_lens = random_pairs(10, seed=4)
    special = torch.tensor(bert.special_ids(VOCAB))
    real = (torch.arange(16)[None] < valid_lens[:, None]) & ~torch.isin(tokens, special)
    counts = [torch.zeros(10, len(VOCAB)).scatter_add_(1, tokens, (real & (segments == s)).float())
              for s in (0, 1)]
    overlap = bert.word_overlap(tokens, real & (segments == 0), real & (segments == 1))
    expected = (counts[0] @ model.bags[0].weight + counts[1] @ model.bags[1].weight
                + overlap[:, None] * model.overlap.weight.T + model.overlap.bias)
    with torch.no_grad():
        assert torch.allclose(model(tokens, segments, valid_lens), expected, atol=1e-5)


def test_bag_of_words_starts_at_no_evidence_and_ignores_special_tokens():
    model = ch.BagOfWords(len(VOCAB), 3, ignore=bert.special_ids(VOCAB))
    assert all(torch.count_nonzero(bag.weight) == 0 for bag in model.bags)
    with torch.no_grad():
        model.bags[0].weight[VOCAB["<cls>"]] = 100.0
        model.bags[1].weight[VOCAB["<sep>"]] = 100.0
    tokens, segments, valid_lens = random_pairs(4)
    with torch.no_grad():
        out = model(tokens, segments, valid_lens)
    assert out.abs().max() < 50


def test_word_overlap_by_hand_and_against_the_helper():
    toks, segs = text.get_tokens_and_segments("a dog in the park".split(), "the dog sleeps".split())
    tokens, segments = torch.tensor([VOCAB[toks]]), torch.tensor([segs])
    words = ~torch.isin(tokens, torch.tensor(bert.special_ids(VOCAB)))
    first, second = words & (segments == 0), words & (segments == 1)
    assert ch.word_overlap(tokens, first, second).item() == pytest.approx(2 / 3)
    tokens, segments, valid_lens = random_pairs(30, seed=7)
    real = torch.arange(16)[None] < valid_lens[:, None]
    first, second = real & (segments == 0), real & (segments == 1)
    assert torch.equal(ch.word_overlap(tokens, first, second), bert.word_overlap(tokens, first, second))
    empty = torch.zeros_like(second)
    assert torch.equal(ch.word_overlap(tokens, first, empty), torch.zeros(30))  # no second sentence: 0


# --- intervals, metrics, vocabularies -----------------------------------------------------------


def test_t_quantile_equals_scipy():
    stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 3, 4, 5, 7, 10, 20, 30, 100):
        for p in (0.9, 0.95, 0.975, 0.995):
            assert ch.t_quantile(p, df) == pytest.approx(stats.t.ppf(p, df), abs=2e-4), (p, df)


def test_t_interval_against_scipy_and_by_hand():
    stats = pytest.importorskip("scipy.stats")
    values = [0.531, 0.522, 0.547, 0.528]
    mean, half = ch.t_interval(values)
    low, high = stats.t.interval(0.95, len(values) - 1, loc=sum(values) / 4, scale=stats.sem(values))
    assert mean == pytest.approx((low + high) / 2) and half == pytest.approx((high - low) / 2, abs=1e-5)
    mean, half = ch.t_interval([1.0, 3.0], confidence=0.9)  # s = sqrt(2), t_0.95,1 = 6.314
    assert mean == 2.0 and half == pytest.approx(6.3138 * math.sqrt(2) / math.sqrt(2), abs=1e-3)
    assert ch.t_interval([0.5, 0.5, 0.5])[1] == 0.0
    with pytest.raises(ValueError, match="at least 2"):
        ch.t_interval([0.5])


def test_spam_scores_equal_the_counts():
    pred = torch.tensor([0, 1, 1, 0, 1, 0, 0, 0])
    labels = torch.tensor([0, 1, 0, 1, 1, 0, 0, 0])  # TP 2, FP 1, FN 1, TN 4
    scores = ch.spam_scores(pred, labels)
    assert scores == pytest.approx({"accuracy": 6 / 8, "precision": 2 / 3, "recall": 2 / 3, "F1": 2 / 3})
    report = classification.precision_recall_f1(classification.confusion_matrix(pred, labels, 2))
    assert scores["F1"] == pytest.approx(report["f1"][1].item())
    assert ch.spam_scores(torch.zeros(8, dtype=torch.long), labels)["F1"] == 0.0  # always ham


def test_unk_share_counts_only_real_words():
    toks, segs = text.get_tokens_and_segments("a zebra plays".split(), "the yak".split())
    tokens = torch.full((1, 16), VOCAB["<pad>"])
    tokens[0, : len(toks)] = torch.tensor(VOCAB[toks])
    examples = {"tokens": tokens, "segments": torch.zeros(1, 16, dtype=torch.long),
                "valid_lens": torch.tensor([len(toks)]), "labels": torch.tensor([0])}
    assert ch.unk_share(examples, VOCAB) == pytest.approx(2 / 5)


def test_task_vocab_keeps_every_word_and_the_reserved_tokens():
    vocab = ch.task_vocab([["a", "rare", "word"], ["a", "dog"]])
    assert all(tok in vocab for tok in ("rare", "word", "dog", *text.BERT_RESERVED_TOKENS))
    assert vocab.to_tokens(0) == "<unk>" and vocab["a"] == 5  # most frequent after <unk> and the 4 reserved


def test_input_rows_align_tokens_and_segments():
    tokens, segments, valid_lens = random_pairs(1)
    rows = ch.input_rows(tokens[0], segments[0], valid_lens[0].item(), VOCAB, per_row=4).split("\n")
    assert rows[0].startswith("token   <cls>") and rows[1].startswith("segment 0")
    assert len(rows) == 2 * math.ceil(valid_lens[0].item() / 4)
    for token_row, segment_row in zip(rows[::2], rows[1::2], strict=True):
        starts = [i for i, ch_ in enumerate(token_row) if i >= 8 and ch_ != " " and token_row[i - 1] == " "]
        assert all(segment_row[i] in "01" for i in starts)


def test_paired_bootstrap_and_hide_premise():
    labels = torch.randint(3, (500,), generator=torch.Generator().manual_seed(0))
    diff, low, high = ch.paired_bootstrap(labels, labels, labels)
    assert diff == low == high == 0.0
    wrong = (labels + 1) % 3
    diff, low, high = ch.paired_bootstrap(labels, wrong, labels, num_samples=200)
    assert diff == 1.0 and low == high == 1.0
    mixed = torch.where(torch.arange(500) % 2 == 0, labels, wrong)
    diff, low, high = ch.paired_bootstrap(labels, mixed, labels, num_samples=500)
    assert diff == pytest.approx(0.5) and low < 0.5 < high and high - low < 0.15
    tokens, segments, valid_lens = random_pairs(3)
    examples = {"tokens": tokens, "segments": segments, "valid_lens": valid_lens}
    hidden = ch.hide_premise(examples, VOCAB["<pad>"])
    assert torch.all(hidden["tokens"][segments == 0] == VOCAB["<pad>"])
    assert torch.equal(hidden["tokens"][segments == 1], tokens[segments == 1])


# --- fine-tuning over seeds ---------------------------------------------------------------------------


def test_fine_tune_seeds_trains_one_model_per_seed():
    tokens, segments, valid_lens = random_pairs(120, seed=1)
    labels = (tokens == VOCAB["dog"]).any(1).long()  # learnable from the words alone
    data = {split: {"tokens": tokens, "segments": segments, "valid_lens": valid_lens, "labels": labels}
            for split in ("train", "val", "test")}
    make = partial(ch.BagOfWords, len(VOCAB), 2, bert.special_ids(VOCAB))
    results = ch.fine_tune_seeds(make, data, (0, 1), 4, 0.1, 32, "cpu", "bag")
    assert [r["seed"] for r in results] == [0, 1]
    assert results[0]["model"] is not results[1]["model"]
    for r in results:
        assert r["test_acc"] > 0.9 and 1 <= r["best_epoch"] <= 4 and r["seconds"] > 0
        assert r["pred"].shape == labels.shape


def test_compare_reports_the_difference_and_whether_intervals_overlap():
    line = ch.compare("a", [0.50, 0.52, 0.54], "b", [0.51, 0.53, 0.55])
    assert line == "a minus b: -0.010, intervals overlap"
    assert ch.compare("a", [0.60, 0.61, 0.62], "b", [0.50, 0.51, 0.52]).endswith("intervals do not overlap")


def test_summary_row_shows_mean_interval_min_max_and_seconds():
    row = ch.summary_row("model", [0.50, 0.52, 0.54], [10.0, 12.0, 14.0])
    assert "0.520 ± 0.050" in row and "0.500-0.540" in row and "12.0 s" in row


# --- the widget -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pair_models():
    torch.manual_seed(0)
    pre = ch.BERTClassifier.from_pretrained(small_bert(), 3).eval()
    bow = ch.BagOfWords(len(VOCAB), 3, bert.special_ids(VOCAB))
    return {"pre-trained": (pre, VOCAB), "bag of words": (bow, VOCAB)}


def test_class_probabilities_sum_to_one_and_name_unknown_words(pair_models):
    results = ch.class_probabilities(pair_models, "A man plays the guitar.", "A zebra sleeps.", max_len=16)
    assert list(results) == ["pre-trained", "bag of words"]
    for probs, unknown in results.values():
        assert probs.shape == (3,) and probs.sum().item() == pytest.approx(1.0)
        assert unknown == [".", "zebra"]
    single = ch.class_probabilities(pair_models, "Call now, a free prize", max_len=16)
    assert single["pre-trained"][1] == [","]


def test_class_probabilities_match_the_model_and_restore_its_mode(pair_models):
    model = pair_models["pre-trained"][0].train()
    probs, _ = ch.class_probabilities(pair_models, "a man plays", "the dog sleeps", max_len=16)["pre-trained"]
    assert model.training
    model.eval()
    toks, segs = text.get_tokens_and_segments(["a", "man", "plays"], ["the", "dog", "sleeps"])
    with torch.no_grad():
        logits = model(torch.tensor([VOCAB[toks]]), torch.tensor([segs]), torch.tensor([len(toks)]))
    torch.testing.assert_close(probs, logits.softmax(-1)[0])


@pytest.mark.parametrize("text_a, text_b, match", [
    ("", "a dog", "premise is empty"),
    ("a dog", "   ", "hypothesis is empty"),
    ("a man " * 6, "a dog " * 2, r"19 tokens.*stop at 16"),
])
def test_class_probabilities_refuse_empty_and_too_long_inputs(pair_models, text_a, text_b, match):
    with pytest.raises(ValueError, match=match):
        ch.class_probabilities(pair_models, text_a, text_b, max_len=16)


def test_too_long_message_names_the_message(pair_models):
    with pytest.raises(ValueError, match="shorten the message"):
        ch.class_probabilities(pair_models, "free " * 15, max_len=16)
    with pytest.raises(ValueError, match="message is empty"):
        ch.class_probabilities(pair_models, "", max_len=16)


def test_draw_probabilities_and_the_explorer(pair_models):
    fig, message = ch.draw_probabilities("a man plays", "the zebra sleeps", models=pair_models,
                                         class_names=("entailment", "contradiction", "neutral"), max_len=16)
    assert "pre-trained:" in message and "bag of words:" in message
    assert "&lt;unk&gt; for the BERTs: zebra" in message  # escaped: the explorer shows HTML
    plt.close(fig)
    draw = partial(ch.draw_probabilities, models=pair_models,
                   class_names=("entailment", "contradiction", "neutral"), max_len=16)
    explorer = widgets.PlotExplorer(
        {"text_a": w.Text(value="a man plays"), "text_b": w.Text(value="the dog sleeps")}, draw, tight=False)
    assert explorer.message.startswith("pre-trained: ")
    assert explorer.image.value  # a picture was drawn
    explorer.controls["text_b"].value = ""
    assert "hypothesis is empty" in explorer.message
    explorer.controls["text_b"].value = "a zebra"
    assert "<unk> for the BERTs: zebra" in explorer.message
    assert html.unescape(explorer.status.value) == explorer.message
    assert explorer.seconds < 1.0
