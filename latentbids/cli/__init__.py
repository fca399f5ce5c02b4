"""latentbids.cli"""
