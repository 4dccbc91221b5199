"""Background work beside the request path, each loop supervised the same way: the card outbox, housekeeping."""
