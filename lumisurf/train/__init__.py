"""Training: trainer loop, schedules, checkpoints, run folders, logging."""
