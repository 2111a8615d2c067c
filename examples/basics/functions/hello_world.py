def hello_world(input):
    return f"Hello, {input.get('name', 'World')}!"
