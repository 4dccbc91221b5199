"""The contract's vocabulary, below every layer: the wire types (msgspec Structs and their field rules) and
the error catalogue. It imports nothing of the layers above."""
