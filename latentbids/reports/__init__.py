"""latentbids.reports"""
