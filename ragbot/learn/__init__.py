"""Learn: the answer log every ask writes and the votes on it (feedback.py), tuning data, `ragbot
tune`, the gate and the versioned adapters."""
