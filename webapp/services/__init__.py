"""What the pages, the API, the CLI and the jobs share: validate, enforce the rules, record,
enqueue. One module per area; each takes the acting user and address (an `Actor`) as an
argument, so every caller is treated alike."""
