// CUDA kernels of the fused Runge-Kutta ops (the CUDA issue fills this in). Until then this
// translation unit only proves that the shared host+device element headers compile under nvcc.
#include "anode_native/rk_element.h"
#include "anode_native/tableau.h"
