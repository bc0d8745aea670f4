"""Texts and question sets shipped with dsdeploy, shared by bench and eval (see README.md)."""
