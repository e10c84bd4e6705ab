"""One module per quantization backend behind one small interface; see `base.Backend`."""
