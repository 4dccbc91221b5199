"""The outside world that issues cards: Lithic's client, a simulator of the same shape, and the gateway
choosing one per organization. Nothing here imports the HTTP faces, the rules or the store."""
