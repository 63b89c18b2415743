#pragma once
// Dormand-Prince 5(4) tableau with Shampine's error weights and dense-output midpoint weights,
// the same values as torchdiffeq 0.2.5 (dopri5.py), so both libraries take the same steps.

namespace anode {
namespace dp5 {

constexpr int kStages = 7;
constexpr int kOrder = 5;

// Nodes c_i (stage i is evaluated at t0 + c_i * dt); c_6 = c_7 = 1 are evaluated at exactly t1.
constexpr double C[kStages] = {0.0, 1.0 / 5, 3.0 / 10, 4.0 / 5, 8.0 / 9, 1.0, 1.0};

// A[i][j]: coefficient of stage j in the input of stage i (i = 1..6). Row 6 is the 5th-order
// solution B, so the input of stage 7 is y1 (first-same-as-last).
constexpr double A[kStages][kStages] = {
    {0, 0, 0, 0, 0, 0, 0},
    {1.0 / 5, 0, 0, 0, 0, 0, 0},
    {3.0 / 40, 9.0 / 40, 0, 0, 0, 0, 0},
    {44.0 / 45, -56.0 / 15, 32.0 / 9, 0, 0, 0, 0},
    {19372.0 / 6561, -25360.0 / 2187, 64448.0 / 6561, -212.0 / 729, 0, 0, 0},
    {9017.0 / 3168, -355.0 / 33, 46732.0 / 5247, 49.0 / 176, -5103.0 / 18656, 0, 0},
    {35.0 / 384, 0, 500.0 / 1113, 125.0 / 192, -2187.0 / 6784, 11.0 / 84, 0},
};

constexpr double B[kStages] = {35.0 / 384, 0, 500.0 / 1113, 125.0 / 192, -2187.0 / 6784, 11.0 / 84, 0};

// Error weights B - B_hat (5th minus embedded 4th order).
constexpr double E[kStages] = {
    35.0 / 384 - 1951.0 / 21600,
    0,
    500.0 / 1113 - 22642.0 / 50085,
    125.0 / 192 - 451.0 / 720,
    -2187.0 / 6784 - -12231.0 / 42400,
    11.0 / 84 - 649.0 / 6300,
    -1.0 / 60,
};

// y(t0 + dt/2) ~= y0 + dt * sum_j CMID_j k_j, used to fit the quartic interpolant.
constexpr double CMID[kStages] = {
    6025192743.0 / 30085553152 / 2,    0,
    51252292925.0 / 65400821598 / 2,   -2691868925.0 / 45128329728 / 2,
    187940372067.0 / 1594534317056 / 2, -1776094331.0 / 19743644256 / 2,
    11237099.0 / 235043384 / 2,
};

}  // namespace dp5
}  // namespace anode
