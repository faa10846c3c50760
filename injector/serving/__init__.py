"""injector/serving"""
