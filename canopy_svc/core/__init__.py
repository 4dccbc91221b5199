"""The plumbing every layer uses: settings, secret files, the database pool and gate, crypto, logs, the
embedded PostgreSQL, the HTTP server's limits."""
