"""Showing results: terminal tables (`terminal`), a sweep's files and HTML report (`sweep`, `html`),
`runs compare` (`compare`); every number is formatted by `format`."""
