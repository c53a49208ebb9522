"""Real-browser tests (marker ``browser``): headless Chromium driven by playwright."""
