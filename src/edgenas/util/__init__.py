"""Small helpers shared by every part: progress bars, model size counts, atomic file writes."""
