"""Chapter 7's code, imported from the notebook, against PyTorch's layers and helpers.transformer."""

import matplotlib.pyplot as plt
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from decoding import stepwise_logits
from helpers import seq2seq, transformer
from helpers.datasets import NMTTestSet
from helpers.text import Vocab, build_array_nmt
from notebook_code import load_notebook

ch7 = load_notebook("07_transformer")
RESERVED = ["<pad>", "<bos>", "<eos>"]
SRC = Vocab([["i", "am", "cold", "."], ["we", "are", "friends", "."]] * 2, reserved_tokens=RESERVED)
TGT = Vocab([["j'ai", "froid", "."], ["nous", "sommes", "amis", "."]] * 2, reserved_tokens=RESERVED)
SIZES = dict(num_hiddens=16, ffn_num_hiddens=32, num_heads=4, num_layers=2)


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))



def small_models():
    torch.manual_seed(0)
    sizes = SIZES.values()
    ours = seq2seq.EncoderDecoder(ch7.TransformerEncoder(len(SRC), *sizes),
                                  ch7.TransformerDecoder(len(TGT), *sizes))
    helper = transformer.make_transformer(len(SRC), len(TGT), dropout=0.0, **SIZES)
    helper.load_state_dict(ours.state_dict())
    return ours.eval(), helper.eval()


def test_layer_norm_and_add_norm_equal_torch():
    torch.manual_seed(0)
    theirs = nn.LayerNorm(8)
    with torch.no_grad():
        theirs.weight.normal_()
        theirs.bias.normal_()
    ours = ch7.LayerNorm(8)
    ours.load_state_dict(theirs.state_dict())
    X = randn(2, 3, 8) * 5 + 3
    assert torch.allclose(ours(X), theirs(X), atol=1e-5)
    Y = randn(2, 3, 8, seed=1)
    assert torch.allclose(ch7.AddNorm(8).eval()(X, Y), F.layer_norm(X + Y, (8,)), atol=1e-5)


def test_ffn_is_position_wise_and_equals_the_helper():
    torch.manual_seed(0)
    ffn = ch7.PositionWiseFFN(8, 16)
    helper = transformer.PositionWiseFFN(8, 16)
    helper.load_state_dict(ffn.state_dict())
    X = randn(2, 4, 8)
    assert torch.allclose(ffn(X), helper(X))
    assert torch.allclose(ffn(X)[:, 2], ffn(X[:, 2]))


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_blocks_equal_torch_transformer_encoder_layer(norm_first):
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True, norm_first=norm_first).eval()
    block_class = ch7.PreNormEncoderBlock if norm_first else ch7.TransformerEncoderBlock
    block = ch7.load_from_torch(block_class(16, 32, 4), layer).eval()
    X, lens = randn(3, 6, 16), torch.tensor([6, 2, 4])
    with torch.no_grad():
        expected = layer(X, src_key_padding_mask=torch.arange(6)[None] >= lens[:, None])
        assert torch.allclose(block(X, lens), expected, atol=1e-5)


def test_decoder_block_equals_torch_transformer_decoder_layer():
    torch.manual_seed(0)
    layer = nn.TransformerDecoderLayer(16, 4, 32, dropout=0.0, batch_first=True).eval()
    ours = ch7.TransformerDecoderBlock(16, 32, 4).eval()
    ours.load_state_dict(transformer.TransformerDecoderBlock(16, 32, 4).load_from_torch(layer).state_dict())
    X, memory, lens = randn(3, 5, 16), randn(3, 6, 16, seed=1), torch.tensor([6, 2, 4])
    with torch.no_grad():
        causal = nn.Transformer.generate_square_subsequent_mask(5)
        expected = layer(X, memory, tgt_mask=causal, tgt_is_causal=True,
                         memory_key_padding_mask=torch.arange(6)[None] >= lens[:, None])
        assert torch.allclose(ours(X, memory, lens)[0], expected, atol=1e-5)


def test_transformer_equals_the_helper_and_caches_exactly():
    ours, helper = small_models()
    src, lens = torch.randint(0, len(SRC), (3, 6)), torch.tensor([6, 2, 4])
    Y = torch.randint(0, len(TGT), (3, 5))
    with torch.no_grad():
        full = ours(src, Y, lens)
        assert torch.allclose(full, helper(src, Y, lens), atol=1e-5)
        assert torch.allclose(stepwise_logits(ours, src, lens, Y)[0], full, atol=1e-5)
        Y2 = Y.clone()
        Y2[:, 3] = 0
        assert torch.allclose(ours(src, Y2, lens)[:, :3], full[:, :3], atol=1e-6)  # causal
    bos, eos = TGT["<bos>"], TGT["<eos>"]
    for beam_size in (1, 3):
        assert (seq2seq.beam_search(ours, src, lens, bos, eos, 5, beam_size)
                == seq2seq.beam_search(helper, src, lens, bos, eos, 5, beam_size))


def test_parameter_formula():
    _, helper = small_models()
    total, parts = ch7.transformer_parameters(len(SRC), len(TGT), 16, 32, 2)
    assert total == sum(p.numel() for p in helper.parameters())
    assert parts["output layer"] == 16 * len(TGT) + len(TGT)


def test_train_and_score_returns_a_table_row():
    source, target = [["i", "am", "cold", "."]] * 8, [["j'ai", "froid", "."]] * 8
    test = NMTTestSet(source, target, *build_array_nmt(source, SRC, 6), *build_array_nmt(target, TGT, 6))
    buckets = seq2seq.BucketLoader(test.src, test.src_valid_len, test.tgt, test.tgt_valid_len, batch_size=4)
    torch.manual_seed(0)
    model = transformer.make_transformer(len(SRC), len(TGT), num_hiddens=16, ffn_num_hiddens=32, num_heads=2,
                                         num_layers=1, dropout=0.0)
    row, history = ch7.train_and_score("tiny", model, 0.01, 3, buckets, test, TGT, 6)
    assert row["model"] == "tiny" and row["epochs"] == 3 and history.num_epochs == 3
    assert row["loss"] == history["train_loss"][-1] < history["train_loss"][0]
    assert 0.0 <= row["greedy"] <= 100.0 and 0.0 <= row["beam"] <= 100.0


def test_attention_maps_widget_functions_and_editor_scores():
    _, model = small_models()
    source, decoder_input, weights = ch7.transformer_attention(model, "we are friends .", SRC, TGT, 6)
    assert source == ["we", "are", "friends", ".", "<eos>"] and decoder_input[0] == "<bos>"
    m = len(decoder_input)
    assert weights["encoder self-attention"].shape == (4, 5, 5)
    assert weights["decoder self-attention"].shape == (4, m, m)
    assert weights["cross-attention"].shape == (4, m, 5)
    assert weights["decoder self-attention"].triu(1).eq(0).all()  # causal
    plt.close(ch7.draw_heads(source, decoder_input, weights))
    fig, message = ch7.draw_cross_attention(model, "we are hot .", 2, SRC, TGT, 6)
    assert "&rarr;" in message and "unknown words: hot" in message
    plt.close(fig)
    with pytest.raises(ValueError, match="empty"):
        ch7.draw_cross_attention(model, " ", 1, SRC, TGT, 6)
    tokens = ["we", "are", "friends", ".", "<eos>"]
    scores = ch7.encoder_scores(model, tokens, SRC)
    mha = model.encoder.blks[0].attention
    with torch.no_grad():
        H = model.encoder.pos_encoding(model.encoder.embedding(torch.tensor([SRC[tokens]])) * 4.0)
        mha(H, H, H)
        assert torch.allclose(torch.softmax(scores, -1), mha.attention_weights[0].mean(0), atol=0.5)
    assert scores.shape == (5, 5)


# --------------------------------------------------------------------------------------------
# The comparison table's RNN and Bahdanau rows are copied from chapters 5b and 6
# --------------------------------------------------------------------------------------------


def _notebook_json(stem):
    import json
    from pathlib import Path

    return json.loads((Path(__file__).resolve().parents[1] / "notebooks" / f"{stem}.ipynb").read_text())


def _stream_text(stem):
    """Everything the committed notebook printed, in cell order."""
    text = []
    for cell in _notebook_json(stem)["cells"]:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                text.append("".join(output["text"]))
    return "\n".join(text)


def _copied_baselines():
    """The `baselines` list of chapter 7's table cell, read from its source without running it."""
    import ast

    for cell in _notebook_json("07_transformer")["cells"]:
        source = "".join(cell["source"])
        if cell["cell_type"] == "code" and "baselines = [" in source:
            tree = ast.parse(source)
            for node in tree.body:
                if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "baselines":
                    code = compile(ast.Expression(node.value), "07_transformer", "eval")  # dict(...) rows
                    rows = eval(code, {"__builtins__": {}, "dict": dict})
                    return {row["model"]: row for row in rows}
    raise AssertionError("chapter 7 has no `baselines = [...]` cell any more; update this test")


@pytest.mark.parametrize("model, stem", [("RNN seq2seq", "05b_seq2seq"), ("Bahdanau", "06_attention")])
def test_copied_table_rows_match_the_chapters_that_produce_them(model, stem):
    import re

    row, printed = _copied_baselines()[model], _stream_text(stem)
    where = f"chapter 7's `baselines` row {model!r} does not match {stem}.ipynb's outputs; copy its numbers"
    assert f"{row['parameters']:,} parameters" in printed, where
    trained = re.search(r"trained (\d+) epochs in (\d+) s; final training loss ([\d.]+)", printed)
    assert trained, f"{stem}.ipynb no longer prints 'trained N epochs in S s; final training loss L'"
    produced = (int(trained[1]), int(trained[2]), float(trained[3]))
    assert (row["epochs"], row["seconds"], row["loss"]) == produced, where
    bleu = re.search(r"greedy:?\s+(?:corpus BLEU )?([\d.]+).*?beam \(k=3\):?\s+(?:corpus BLEU )?([\d.]+)",
                     printed, re.S)
    assert bleu, f"{stem}.ipynb no longer prints its greedy and beam corpus BLEU"
    assert (row["greedy"], row["beam"]) == (float(bleu[1]), float(bleu[2])), where
