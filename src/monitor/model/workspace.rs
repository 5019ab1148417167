//! The saved workspace: Redis URL (never a password), channel prefix, node list.
