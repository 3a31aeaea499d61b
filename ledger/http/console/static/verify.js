// Placeholder: helper "verifyjs" owns this file (docs/console.md, the verify control).
