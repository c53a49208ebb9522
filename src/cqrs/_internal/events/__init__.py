"""Event processing: the emitter, the publishing strategies and the processor."""
