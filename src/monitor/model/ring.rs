//! A bounded ring buffer that counts what it evicts.
