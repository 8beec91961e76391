"""SDTM export: mapping specifications (`spec`), derivations (`derive`), the engine
(`build`), the dataset writers (`writers`) and the SDTMIG rule checks (`rules`)."""
