"""The client-side commands of ``ranker``: ``simulate`` (realistic traffic), ``replay`` (a
backfill from a file of events) and ``top`` (a list in the terminal). Each talks to a running
ranker over HTTP, as any client would."""
