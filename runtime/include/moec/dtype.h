// moec/dtype.h — the element types; one enum shared with the compiler (moec/checkpoint/dtype.h).
#pragma once

#include "moec/checkpoint/dtype.h"
