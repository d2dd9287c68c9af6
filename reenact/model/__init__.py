"""The warp-then-texture generator: networks, weights on disk, expression presets."""
