"""A check the decoder tests share: decoding one token at a time must equal one teacher-forced call."""

import torch


def stepwise_logits(model, src, valid_len, dec_X):
    """The decoder's logits for ``dec_X`` computed one token at a time from a fresh state.

    A decoder that carries what it needs in its state (a hidden state, a key/value cache) gives
    the same logits as ``model(src, dec_X, valid_len)``, which reads the whole ``dec_X`` at once.
    """
    with torch.no_grad():
        state = model.decoder.init_state(model.encoder(src, valid_len), valid_len)
        steps = []
        for t in range(dec_X.shape[1]):
            logits, state = model.decoder(dec_X[:, t : t + 1], state)
            steps.append(logits)
    return torch.cat(steps, dim=1), state
