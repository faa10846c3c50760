"""injector/webhook"""
