//! Race hunting: repeat a concurrent scenario until it fails.
