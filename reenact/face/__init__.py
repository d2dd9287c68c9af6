"""Face tracking (MediaPipe), Action Units and alignment."""
