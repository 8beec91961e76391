"""Named derivations of the AE, EX, LB, VS, CM and MH mappings, registered into
`app.sdtm.derive` with `@derivation("name")` on import."""
