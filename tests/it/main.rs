mod sim_smoke;
