"""Training the expression generator: dataset preparation (``reenact.train.prepare``)."""
