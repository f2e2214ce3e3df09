"""From a data row to model-ready token ids: layouts, the Jinja renderer, demonstrations, label words,
tokenisation around the answer slot, and soft-prompt tokens.

Entry points: `render.Renderer` (text), `encode.make_encoder` (token ids for one model); nothing here
needs model weights, and only `soft` imports torch.
"""
