def is_even(input):
    return input["number"] % 2 == 0
