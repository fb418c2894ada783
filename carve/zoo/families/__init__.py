"""Model families: each module turns a family's design rules into explicit ArchSpecs."""
