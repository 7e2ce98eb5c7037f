"""What the tests and the benchmarks share: made pictures of digits, a tiny copy of the project, loopback ports,
a two-node Ray cluster on loopback, the digit page's server. Product code, so that neither imports the other
(benchmarks/ never imports tests/, and tests/ imports benchmarks/ only to test them)."""
