//! Capture files: JSON Lines and CSV export, JSON Lines import.
