"""Learn: feedback, tuning data, `ragbot tune`, the gate and the versioned adapters."""
