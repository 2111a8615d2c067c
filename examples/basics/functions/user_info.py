def user_info(input):
    return {"user": input["name"], "age": input["age"], "adult": input["age"] >= 18}
