//! TODO: Redis backplane
