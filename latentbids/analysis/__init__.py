"""latentbids.analysis"""
