"""injector/operations"""
