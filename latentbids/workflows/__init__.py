"""latentbids.workflows"""
